"""Production HTTPS settings and the Content-Security-Policy, as a browser and an operator see them.

- every page answers with the policy and the other security headers, and carries no inline
  script, inline style or event-handler attribute the policy would block (Django's test client);
- the production environment resolves to HTTPS settings, ``manage.py check --deploy`` is clean
  with it, and a client cannot claim HTTPS with a header unless the operator names that header
  (fresh ``python`` processes, since settings are read at import);
- the main pages load in a real Chromium with no CSP violation, charts drawn and forms working.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.test import Client

from processing.models import TransactionName
from tests.dashboards.rows import event_create, fixture_event, issue_create

# The performance pages' fixture (real intake, broker and worker service) and the stack's.
from tests.e2e import stack
from tests.e2e.conftest import (  # noqa: F401
    chromium,
    e2e_broker_url,
    e2e_database_url,
    log_dir,
    production_stack,
    var_dir,
)
from tests.performance.conftest import broker, intake_state_clean, perf  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
DIRECTIVES = [
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
]
# What the policy blocks, in markup: a style attribute, a <style> or an inline <script>, a handler.
INLINE = re.compile(r"<[^>]*\sstyle\s*=|<style\b|<script(?![^>]*\bsrc=)|<[^>]*\son[a-z]+\s*=|javascript:", re.I)


def headers_check(response, url: str) -> None:
    policy = response.headers.get("Content-Security-Policy", "")
    for directive in DIRECTIVES:
        assert directive in policy, f"{url}: {directive!r} missing from {policy!r}"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers.get("X-Frame-Options") == "DENY", url
    assert response.headers.get("X-Content-Type-Options") == "nosniff", url
    assert response.headers.get("Referrer-Policy") == "same-origin", url


def two_minutes_ago() -> str:
    from datetime import datetime, timedelta, timezone

    return (datetime.now(tz=timezone.utc) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:00Z")


@pytest.mark.django_db
def test_every_page_sends_the_policy_and_nothing_inline_it_would_block(perf):
    anonymous = Client()
    for url in ("/login/", "/signup/", "/password-reset/", "/password-reset/sent/"):
        response = anonymous.get(url)
        assert response.status_code == 200, url
        headers_check(response, url)
        assert not INLINE.search(response.text), f"{url}: {INLINE.search(response.text).group(0)}"

    # An issue with a real event, and a transaction with a sampled trace of nested spans.
    issue = issue_create(app=perf.app)
    event = event_create(issue=issue, data=fixture_event())
    from opbeat_agent.sketch import DurationSketch

    sketch = DurationSketch.of([12.0, 40.0, 95.5])
    body = {
        "histograms": [{
            "transaction": "GET /orders", "result": 200, "kind": "request", "timestamp": two_minutes_ago(),
            "count": sketch.count, "sum": sketch.sum, "min": sketch.min, "max": sketch.max, "sketch": sketch.to_dict(),
        }],
        "traces": [{
            "id": "1" * 32, "transaction": "GET /orders", "result": 200, "kind": "request",
            "timestamp": two_minutes_ago(), "duration": 95.5,
            "spans": [
                {"id": 1, "parent": 0, "signature": "render orders.html", "kind": "template.django", "start": 1.0, "duration": 60.0},
                {"id": 2, "parent": 1, "signature": "SELECT FROM orders", "kind": "db.postgresql.sql", "start": 2.0,
                 "duration": 30.0, "extra": {"sql": "SELECT 1"}},
            ],
        }],
    }  # fmt: skip
    assert perf.post_agent(body).status_code == 202
    perf.work()
    name = TransactionName.objects.get(app=perf.app, name="GET /orders")
    org, app = perf.organization.public_id, perf.app.public_id
    pages = {
        f"/orgs/{org}/": "Apps",
        f"/orgs/{org}/apps/{app}/settings/": "Credentials",
        f"/orgs/{org}/apps/{app}/": "ZeroDivisionError",
        f"/orgs/{org}/apps/{app}/issues/{issue.id}/events/{event.event_id.hex}/": "ZeroDivisionError",
        f"/orgs/{org}/apps/{app}/performance/": "GET /orders",
        f"/orgs/{org}/apps/{app}/performance/{name.id}/": "SELECT FROM orders",
        f"/orgs/{org}/apps/{app}/releases/": "Releases",
        f"/orgs/{org}/apps/{app}/alerts/": "Alerts",
    }
    for url, text in pages.items():
        response = perf.client.get(url)
        assert response.status_code == 200, url
        assert text in response.text, f"{url} does not show {text!r}"
        headers_check(response, url)
        inline = INLINE.search(response.text)
        assert not inline, f"{url}: {inline.group(0)}"


# --- The production environment, resolved in fresh processes ---------------------------------

_ENV_PREFIXES = ("OPBEAT_", "SECURE_", "SESSION_", "CSRF_")
_SETTINGS_VARS = {
    "DATABASE_URL", "BROKER_URL", "REDIS_URL", "EMAIL_URL", "EMAIL_HOST", "SECRET_KEY", "ALLOWED_HOSTS", "BASE_URL",
    "DEBUG", "DJANGO_SETTINGS_MODULE",
}  # fmt: skip


def production_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The production environment the README documents, nothing from this test process."""
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS and not k.startswith(_ENV_PREFIXES)}
    env.update(
        {
            "OPBEAT_VAR_DIR": str(var_dir),
            "BASE_URL": "https://errors.example.com",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "errors.example.com",
            "DEBUG": "0",
            **extra,
        }
    )
    return env


_PROBE = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opbeat_server.settings")
import django
django.setup()
from django.conf import settings as s
from django.test import Client

client = Client(HTTP_HOST="errors.example.com")
plain = client.get("/login/")
claimed = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps({
    "session_cookie_secure": s.SESSION_COOKIE_SECURE, "csrf_cookie_secure": s.CSRF_COOKIE_SECURE,
    "hsts_seconds": s.SECURE_HSTS_SECONDS, "ssl_redirect": s.SECURE_SSL_REDIRECT,
    "proxy_ssl_header": getattr(s, "SECURE_PROXY_SSL_HEADER", None), "csrf_trusted_origins": s.CSRF_TRUSTED_ORIGINS,
    "trusted_proxy_count": s.OPBEAT_TRUSTED_PROXY_COUNT,
    "plain": [plain.status_code, plain.headers.get("Location")],
    "claimed": [claimed.status_code, claimed.headers.get("Location"), claimed.headers.get("Strict-Transport-Security"),
                str(claimed.cookies.get("csrftoken", ""))],
}))
"""


def probe(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_https_base_url_means_secure_cookies_hsts_and_redirects(tmp_path: Path):
    resolved = probe(production_env(tmp_path / "var"))
    assert resolved["session_cookie_secure"] is True and resolved["csrf_cookie_secure"] is True
    assert resolved["hsts_seconds"] == 365 * 24 * 3600
    assert resolved["ssl_redirect"] is True
    assert resolved["csrf_trusted_origins"] == ["https://errors.example.com"]
    assert resolved["plain"] == [301, "https://errors.example.com/login/"]
    # No proxy header configured: a client saying "I came over HTTPS" is not believed.
    assert resolved["proxy_ssl_header"] is None and resolved["trusted_proxy_count"] == 0
    assert resolved["claimed"][:2] == [301, "https://errors.example.com/login/"]


def test_behind_a_tls_proxy_the_operator_names_its_header(tmp_path: Path):
    env = production_env(tmp_path / "var", OPBEAT_PROXY_SSL_HEADER="X-Forwarded-Proto", OPBEAT_TRUSTED_PROXY_COUNT="1")
    resolved = probe(env)
    assert resolved["proxy_ssl_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert resolved["trusted_proxy_count"] == 1
    status, location, hsts, csrf_cookie = resolved["claimed"]
    assert status == 200 and location is None
    assert hsts == "max-age=31536000"
    assert "secure" in csrf_cookie.lower()
    assert resolved["plain"][0] == 301


def test_embedded_http_keeps_plain_cookies_and_no_redirect(tmp_path: Path):
    env = production_env(tmp_path / "var", BASE_URL="http://127.0.0.1:8000", ALLOWED_HOSTS="errors.example.com")
    resolved = probe(env)
    assert resolved["session_cookie_secure"] is False and resolved["ssl_redirect"] is False
    assert resolved["hsts_seconds"] == 0
    assert resolved["plain"] == [200, None]


def test_check_deploy_is_clean_with_the_documented_production_environment(tmp_path: Path):
    env = production_env(tmp_path / "var")
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout, out.stdout + out.stderr


# --- A real browser ------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple 42"


@pytest.mark.e2e
def test_main_pages_in_chromium_with_no_csp_violation(chromium: str, production_stack):  # noqa: F811
    from playwright.sync_api import sync_playwright

    base_url = production_stack.base_url
    email = f"csp-{uuid.uuid4().hex[:8]}@example.com"
    credentials = json.loads(
        stack.manage(
            "opbeat_create_app", "--email", email, "--password", PASSWORD, "--org", "CSP", "--app", "shop",
            env=production_stack.env,
        ).strip().splitlines()[-1]
    )  # fmt: skip
    org, app = credentials["organization_id"], credentials["app_id"]
    error = stack.captured_errors()[0]
    posted = stack.captured_error_post(base_url, error, **credentials)
    assert posted.status_code == 202, posted.text
    event_location = posted.headers["Location"]
    for body in stack.captured_transactions_now():
        assert stack.captured_transactions_post(base_url, body, **credentials).status_code == 202

    violations: list[str] = []

    def on_console(message) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(f"{message.type}: {message.text}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=stack.CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.on("console", on_console)
        page.on("pageerror", lambda exc: violations.append(f"page error: {exc}"))

        for path in ("/signup/", "/password-reset/", "/login/"):
            assert page.goto(f"{base_url}{path}").status == 200
        # The login form submits (form-action 'self', the redirect after it too).
        page.fill('input[name="username"]', email)
        page.fill('input[name="password"]', PASSWORD)
        page.locator('main form button[type="submit"]').click()
        page.wait_for_url(lambda url: "/login/" not in url)

        # The event's page once the worker has stored it.
        def event_shown() -> bool:
            production_stack.assert_running()
            page.goto(event_location)
            return bool(stack.ISSUE_EVENT_PATH.search(page.url.split("?")[0]))

        stack.wait_until(
            event_shown, timeout=stack.DIGEST_TIMEOUT, what="the event's page", on_timeout=production_stack.logs
        )
        issue_url = page.url
        assert error.decoded["exception"]["type"] in page.inner_text("body")

        performance = f"{base_url}/orgs/{org}/apps/{app}/performance/"

        def transactions_shown() -> bool:
            production_stack.assert_running()
            page.goto(performance)
            return page.locator("table.transactions a").count() > 0

        stack.wait_until(
            transactions_shown, timeout=stack.DIGEST_TIMEOUT, what="transactions", on_timeout=production_stack.logs
        )
        # Charts are drawn: SVG with a real size and lines or bars in it.
        chart = page.locator("svg.chart").first
        box = chart.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50
        assert page.locator("svg.chart polyline, svg.chart circle, svg.chart rect").count() > 0
        page.locator("table.transactions td.title a").first.click()
        page.wait_for_load_state()
        assert page.locator("svg.chart").count() >= 2

        for path in (f"/orgs/{org}/", f"/orgs/{org}/apps/{app}/settings/", f"/orgs/{org}/apps/{app}/",
                     f"/orgs/{org}/apps/{app}/releases/", f"/orgs/{org}/apps/{app}/alerts/"):  # fmt: skip
            response = page.goto(f"{base_url}{path}")
            assert response.status == 200, path
            assert "script-src 'self'" in response.headers.get("content-security-policy", ""), path
        # Styles from the stylesheet apply (style-src 'self' lets it load).
        assert page.evaluate("getComputedStyle(document.querySelector('header.topbar')).display") == "flex"

        # A form on a dashboard page submits: resolve the issue.
        page.goto(issue_url)
        page.locator("form.status-action button[value='resolve']").click()
        page.wait_for_load_state()
        assert "resolved" in page.inner_text("body").lower()

        assert violations == [], "\n".join(violations)

        # The check above can see a violation: an inline style added to a page is reported.
        page.evaluate("document.body.insertAdjacentHTML('beforeend', '<div style=\"color: red\">x</div>')")
        page.wait_for_timeout(500)
        assert any("style" in v for v in violations), "Chromium reported no CSP violation for an inline style"
        browser.close()
