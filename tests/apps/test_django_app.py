"""The example Django project (tests/apps/django_app) with the agent installed, driven by Django's
test client in its own process; the events the agent recorded come back as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.support import IntakeDouble

pytest.importorskip("django")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run():
    intake = IntakeDouble().start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPBEAT_")},
        "DJANGO_SETTINGS_MODULE": "tests.apps.django_app.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "agent"), str(ROOT)]),
        "EXAMPLE_INTAKE_URL": intake.url,
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.apps.django_app.drive"], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        results = json.loads(result.stdout)
        results["_intake"] = intake.accepted()
        results["_intake_url"] = intake.url
        yield results
    finally:
        intake.stop()


def only_event(scenario: dict) -> dict:
    assert scenario["status"] in (200, 500)
    [event] = scenario["events"]
    return event


def test_the_app_inserts_its_middleware_first(run):
    assert run["middleware"][0] == "opbeat_agent.integrations.django.OpbeatMiddleware"
    assert run["middleware"].count("opbeat_agent.integrations.django.OpbeatMiddleware") == 1


def test_a_healthy_request_sends_nothing(run):
    assert run["index"] == {"status": 200, "events": []}


def test_an_unhandled_error_arrives_once_with_the_request(run):
    assert run["error"]["status"] == 500
    # Sent once, though both got_request_exception and the django.request log handler saw it.
    event = only_event(run["error"])
    assert event["exception"] == {"type": "ZeroDivisionError", "value": "division by zero", "module": "builtins"}
    assert event["culprit"] == "tests.apps.django_app.views.error"
    assert (event["release"], event["environment"]) == ("2026.11.1", "test")
    http = event["http"]
    assert http["method"] == "GET"
    assert http["url"] == "http://testserver/error?foo=bar&password=********"
    assert http["query_string"] == "foo=bar&password=********"
    assert http["headers"]["X-Request-Id"] == "r-1"
    # Cookies keep their names and lose every value (a session can hide under any name).
    assert http["headers"]["Cookie"] == "sessionid=********; theme=********"
    assert http["cookies"] == {"sessionid": "********", "theme": "********"}
    assert http["env"] == {"REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "testserver", "SERVER_PORT": "80"}
    frame = event["stacktrace"]["frames"][-1]
    assert frame["context_line"] == "    return HttpResponse(str(1 / divisor))"
    assert frame["in_app"] is True
    assert frame["vars"]["secret_password"] == "********" and frame["vars"]["divisor"] == 0
    # The request's repr in the locals carries the query string: masked there too.
    assert frame["vars"]["request"] == "<WSGIRequest: GET '/error?foo=bar&password=********'>"
    assert "password=pw" not in json.dumps(event)
    assert all(not f["in_app"] for f in event["stacktrace"]["frames"] if f["module"].startswith("django."))


def test_form_bodies_are_captured_and_scrubbed(run):
    event = only_event(run["checkout"])
    assert event["http"]["method"] == "POST"
    assert event["http"]["data"] == {"qty": "2", "card_number": "********", "password": "********", "note": "********"}


def test_json_bodies_are_captured_and_scrubbed(run):
    event = only_event(run["orders"])
    assert event["http"]["data"] == {"missing": "sku-9", "token": "********"}
    assert event["stacktrace"]["frames"][-1]["vars"]["payload"] == {"missing": "sku-9", "token": "********"}


def test_a_template_error_says_which_template_line(run):
    event = only_event(run["broken_template"])
    assert event["exception"]["type"] == "NoReverseMatch"
    template = event["template"]
    assert template["filename"].endswith("django_app/templates/broken.html")
    assert template["lineno"] == 3
    assert template["context_line"] == '<p>{% url "no-such-view" order.id %}</p>'
    assert template["pre_context"] == ["<h1>Order</h1>", "<p>Order {{ order.id }}</p>"]


def test_capture_message_in_a_view_carries_the_request(run):
    event = only_event(run["message"])
    assert run["message"]["status"] == 200
    assert event["param_message"] == {"message": "Refund %s needs review", "params": [42]}
    assert event["level"] == "warning"
    assert event["http"]["url"] == "http://testserver/message/42/"


def test_404_and_disallowed_host_are_not_errors(run):
    assert run["not_found"] == {"status": 404, "events": []}
    assert run["disallowed_host"] == {"status": 400, "events": []}


def test_the_logged_in_user_is_reported(run):
    event = only_event(run["logged_in"])
    assert event["user"] == {
        "id": run["logged_in"]["user_pk"],
        "username": "alice",
        "email": "alice@example.org",
        "is_authenticated": True,
    }
    assert only_event(run["error"])["user"] == {"is_authenticated": False}


def test_manage_py_opbeat_check(run):
    assert run["check_ok"] == {"ok": True, "output": "opbeat_agent: settings OK\n"}
    bad = run["check_bad"]
    assert bad["ok"] is False
    assert bad["output"].splitlines() == [
        "secret_token is not set (OPBEAT_SECRET_TOKEN or SECRET_TOKEN in the settings)",
        "servers: 'intake.example.com' is not an http:// or https:// URL",
        "MIDDLEWARE: opbeat_agent.integrations.django.OpbeatMiddleware is at position 4; "
        "put it first so it sees the whole request",
    ]


def test_manage_py_opbeat_test_prints_the_location(run):
    assert run["test_command"]["ok"] is True, run["test_command"]
    [sent] = run["_intake"]
    assert sent["exception"]["value"] == "This is a test error sent by manage.py opbeat test"
    assert run["test_command"]["output"].strip() == f"Test error sent: {run['_intake_url']}/events/{sent['client_supplied_id']}/"


def transaction_counts(run) -> dict:
    counts: dict = {}
    for body in run["transactions"]:
        for h in body["histograms"]:  # summed over minutes: the run may straddle one
            counts[(h["transaction"], h["result"])] = counts.get((h["transaction"], h["result"]), 0) + h["count"]
    return counts


def test_every_request_is_a_transaction_named_by_its_url_pattern(run):
    counts = transaction_counts(run)
    assert counts[("GET /orders/<int:pk>/", 200)] == 2
    assert counts[("GET /message/<int:order_id>/", 200)] == 1
    assert counts[("GET /error", 500)] == 3  # two through the test client, one through ASGI
    assert counts[("POST /checkout", 500)] == 1
    # A re_path pattern reads as a path, a 404 is one group, never one per raw URL.
    assert counts[("GET /legacy/(?P<code>[a-z]+)/", 200)] == 1
    assert counts[("GET <unmatched>", 404)] == 1
    assert not any("/orders/1/" in name or "no-such-page" in name for name, _ in counts)


def test_orm_queries_and_custom_spans_are_in_the_sampled_trace(run):
    [sample] = [t for body in run["transactions"] for t in body["traces"] if t["transaction"] == "GET /orders/<int:pk>/"][:1]
    spans = sample["spans"]
    queries = [s for s in spans if s["kind"] == "db.sqlite.sql"]
    assert [q["signature"] for q in queries] == ["SELECT FROM auth_user", "SELECT FROM auth_user"]
    assert queries[0]["extra"]["sql"] == (
        'SELECT COUNT(*) AS "__count" FROM "auth_user" WHERE "auth_user"."id" = %s'
    )
    # The sampled request is the slower of two: the first (a cache miss) or the second (a hit).
    # Auto-instrumented (on by default): the cache and the template; the queries are not recorded
    # twice by the sqlite3 instrumentation under Django's own execute_wrapper.
    miss = [("get default", "cache.locmem"), ("price order", "code.custom"), ("set default", "cache.locmem")]
    hit = [("get default", "cache.locmem")]
    others = [(s["signature"], s["kind"]) for s in spans if s["kind"] != "db.sqlite.sql"]
    assert others in (miss + [("order.html", "template.django")], hit + [("order.html", "template.django")])
    assert all(s["parent"] == 0 for s in spans)
    assert all(0 <= s["start"] <= sample["duration"] for s in spans)


def test_under_asgi_async_and_sync_view_errors_are_captured(run):
    assert run["asgi"]["statuses"] == [500, 200, 500]
    first, second = run["asgi"]["events"]
    assert first["exception"]["value"] == "async boom"
    assert first["culprit"] == "tests.apps.django_app.views.async_error"
    assert first["stacktrace"]["frames"][-1]["vars"] == {"request": first["stacktrace"]["frames"][-1]["vars"]["request"], "attempts": 3}
    assert first["http"]["url"] == "http://testserver/async/error"
    assert second["exception"]["type"] == "ZeroDivisionError"
    counts = transaction_counts(run)
    assert counts[("GET /async/error", 500)] == 1 and counts[("GET /async/ok", 200)] == 1
