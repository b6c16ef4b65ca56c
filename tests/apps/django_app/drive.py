"""Drives the example Django project with Django's test client, in its own process (a process can
configure Django once, and the test process is configured for Opbeat Server), and prints one JSON
object: for each scenario, the response status and the events the agent recorded.

    DJANGO_SETTINGS_MODULE=tests.apps.django_app.settings python -m tests.apps.django_app.drive
"""

from __future__ import annotations

import asyncio
import io
import json

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import CommandError, call_command  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402

from opbeat_agent.integrations.django import django_client  # noqa: E402


def command(*args: str) -> dict:
    out = io.StringIO()
    try:
        call_command("opbeat", *args, stdout=out)
        return {"ok": True, "output": out.getvalue()}
    except CommandError as exc:
        return {"ok": False, "output": out.getvalue(), "error": str(exc)}


def main() -> None:
    call_command("migrate", run_syncdb=True, verbosity=0)
    transport = django_client().transport
    browser = Client(raise_request_exception=False)
    browser.cookies["sessionid"] = "not-a-real-session"
    browser.cookies["theme"] = "dark"
    results: dict = {"middleware": list(settings.MIDDLEWARE)}

    scenarios = {
        "index": lambda: browser.get("/"),
        "error": lambda: browser.get("/error?foo=bar&password=pw", HTTP_X_REQUEST_ID="r-1"),
        "checkout": lambda: browser.post(
            "/checkout", {"qty": "2", "card_number": "4111 1111 1111 1111", "password": "pw", "note": "4111111111111111"}
        ),
        "orders": lambda: browser.post(
            "/api/orders", json.dumps({"missing": "sku-9", "token": "t-1"}), content_type="application/json"
        ),
        "broken_template": lambda: browser.get("/broken-template"),
        "message": lambda: browser.get("/message/42/"),
        "not_found": lambda: browser.get("/no-such-page"),
        "disallowed_host": lambda: browser.get("/error", HTTP_HOST="evil.example"),
    }
    for name, run in scenarios.items():
        transport.events.clear()
        response = run()
        results[name] = {"status": response.status_code, "events": list(transport.events)}

    user = get_user_model().objects.create_user("alice", "alice@example.org", "pw-alice-123")
    browser.force_login(user)
    transport.events.clear()
    response = browser.get("/error")
    results["logged_in"] = {"status": response.status_code, "events": list(transport.events), "user_pk": user.pk}
    for path in (f"/orders/{user.pk}/", f"/orders/{user.pk}/", "/legacy/abc/"):
        assert browser.get(path).status_code == 200

    # The same project served through Django's ASGI handler: the middleware chain runs async.
    async def asgi_requests():
        asgi = AsyncClient(raise_request_exception=False)
        return [(await asgi.get(path)).status_code for path in ("/async/error", "/async/ok", "/error")]

    transport.events.clear()
    statuses = asyncio.run(asgi_requests())
    results["asgi"] = {"statuses": statuses, "events": list(transport.events)}
    assert django_client().flush(10)
    results["transactions"] = list(transport.transactions)

    results["check_ok"] = command("check")
    with override_settings(
        OPBEAT={"ORGANIZATION_ID": "org1", "APP_ID": "app1", "SERVERS": ["intake.example.com"]},
        MIDDLEWARE=[*settings.MIDDLEWARE[1:], settings.MIDDLEWARE[0]],
    ):
        results["check_bad"] = command("check")
    results["test_command"] = command("test", "--timeout", "10")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
