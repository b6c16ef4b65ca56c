"""The example Flask app with the agent, sending to the real intake (Opbeat Server's own view,
served by Django's live server) with a real app's token: the intake answers 202 with the event's
dashboard URL, the event is on the queue for the worker, scrubbed as the agent sent it; the
worker's digest groups the app's errors into one issue, and the Location opens its page. Its
transactions (with auto-instrumented spans) reach the intake's transactions endpoint, and the
worker's rollups store them per name and minute with the slowest trace and its spans; so do the
example Django project's, driven in its own process."""

from __future__ import annotations

import pytest

pytest.importorskip("flask")

from django.conf import settings  # noqa: E402

import opbeat_agent  # noqa: E402
from intake.auth import app_credentials_cache_clear  # noqa: E402
from tests.factories import org_app_token_create  # noqa: E402
from tests.intake.conftest import broker  # noqa: E402, F401 - the intake's fixture: real RabbitMQ, purged

from .flask_app import create_app  # noqa: E402

def agent_flask_app(live_server, **config):
    """A fresh organization and app, and the example Flask app reporting to the live intake
    with that app's ids and token."""
    app_credentials_cache_clear()
    owner, organization, app, token = org_app_token_create()
    opbeat_agent.set_client(None)
    flask_app = create_app(
        ORGANIZATION_ID=organization.public_id,
        APP_ID=app.public_id,
        SECRET_TOKEN=token,
        SERVERS=[live_server.url],
        **config,
    )
    return owner, organization, app, flask_app


def test_flask_error_reaches_the_real_intake(live_server, transactional_db, broker, client):
    owner, organization, app, flask_app = agent_flask_app(
        live_server,
        RELEASE="v42",
        # Errors only: this test is about the errors endpoint (the next ones cover transactions).
        TRANSACTIONS_ENABLED=False,
        INSTRUMENT=False,
    )
    agent = flask_app.extensions["opbeat_agent"].client
    try:
        assert flask_app.test_client().get("/error?password=pw").status_code == 500
        assert agent.flush(20)
        transport = agent.transport
        assert transport.last_status == 202, transport.stats()
        assert transport.stats()["sent"] == 1
        location = transport.last_location
        assert location.startswith(f"{settings.BASE_URL}/orgs/{organization.public_id}/apps/{app.public_id}/events/")

        [envelope] = broker.envelopes()
        assert envelope["app_id"] == app.pk
        assert location.endswith(f"/events/{envelope['event_id']}/")
        event = envelope["data"]
        assert event["exception"]["type"] == "ZeroDivisionError"
        assert event["release"] == "v42"
        assert event["http"]["query_string"] == "password=********"
        frame = event["stacktrace"]["frames"][-1]
        assert frame["function"] == "error" and frame["in_app"] is True
        assert frame["vars"]["secret_password"] == "********"

        # A second request fails the same way: the worker groups both into one issue.
        assert flask_app.test_client().get("/error").status_code == 500
        assert agent.flush(20) and transport.stats()["sent"] == 2
        [second] = broker.envelopes()
        from processing.digest import events_digest
        from processing.models import Issue

        assert events_digest(envelopes=[envelope, second]).stored == 2
        [issue] = Issue.objects.filter(app=app)
        assert (issue.exception_type, issue.culprit, issue.event_count) == ("ZeroDivisionError", "tests.apps.flask_app.error", 2)

        # The Location the intake answered opens the event's issue for the app's owner.
        client.force_login(owner)
        page = client.get(location.removeprefix(settings.BASE_URL), follow=True)
        assert page.status_code == 200
        html = page.content.decode()
        assert "ZeroDivisionError" in html and "tests.apps.flask_app" in html
        # The local is masked (the source line itself, in the context lines, says "hunter2").
        assert "secret_password" in html and "********" in html
    finally:
        agent.close(timeout=0)
        opbeat_agent.set_client(None)


def test_flask_transactions_reach_the_real_intake_and_are_stored_by_the_worker(live_server, transactional_db, broker, client):
    owner, organization, app, flask_app = agent_flask_app(
        live_server,
        RELEASE="v43",
        # Auto-instrumentation on: the report's queries and template are the spans.
        INSTRUMENT=True,
        DISABLED_INSTRUMENTATIONS=["http.client", "urllib3", "requests"],
    )
    agent = flask_app.extensions["opbeat_agent"].client
    browser = flask_app.test_client()
    try:
        for _ in range(3):
            assert browser.get("/report/2").status_code == 200
        assert browser.get("/").status_code == 200
        assert browser.get("/missing").status_code == 404
        assert agent.flush(20)
        transport = agent.transport
        stats = transport.stats()
        assert stats.get("transactions_sent") == 1 and not stats.get("rejected"), stats

        [envelope] = broker.envelopes()
        assert envelope["kind"] == "transactions" and envelope["app_id"] == app.pk
        from processing.models import TransactionName, TransactionRollup, TransactionTrace
        from processing.rollups import transactions_digest

        result = transactions_digest(envelopes=[envelope])
        assert (result.rolled_up, result.transactions) == (1, 5)
        minutes = TransactionRollup.objects.filter(app=app, resolution=TransactionRollup.Resolution.MINUTE)
        counts: dict = {}
        for row in minutes.select_related("name"):
            counts[row.name.name] = counts.get(row.name.name, 0) + row.count
        assert counts == {
            TransactionName.TOTAL: 5,
            "GET /report/<int:limit>": 3,
            "GET /": 1,
            "GET /missing": 1,
        }
        report = TransactionName.objects.get(app=app, name="GET /report/<int:limit>")
        assert report.kind == "request"
        [trace] = TransactionTrace.objects.filter(name=report)
        assert trace.release == "v43" and str(trace.result) == "200"
        kinds = [(span["signature"], span["kind"]) for span in trace.spans]
        assert kinds == [
            ("CREATE", "db.sqlite.sql"),
            ("INSERT INTO orders", "db.sqlite.sql"),
            ("SELECT FROM orders", "db.sqlite.sql"),
            ("report.html", "template.jinja2"),
        ]
        # The statement without its literals, as the agent sent it (the intake keeps it as "sql").
        assert trace.spans[2]["sql"] == "SELECT id, total FROM orders WHERE total > ? LIMIT ?"

        # A redelivered message adds nothing.
        assert transactions_digest(envelopes=[envelope]).rolled_up == 0
        assert sum(r.count for r in TransactionRollup.objects.filter(app=app, name=report, resolution=60)) == 3

        # The app's owner sees them on the performance pages, the route escaped as text.
        client.force_login(owner)
        overview = client.get(f"/orgs/{organization.public_id}/apps/{app.public_id}/performance/")
        assert overview.status_code == 200
        assert "GET /report/&lt;int:limit&gt;" in overview.content.decode()
        detail = client.get(f"/orgs/{organization.public_id}/apps/{app.public_id}/performance/{report.pk}/")
        assert detail.status_code == 200
        html = detail.content.decode()
        assert "SELECT FROM orders" in html and "report.html" in html
    finally:
        agent.close(timeout=0)
        opbeat_agent.set_client(None)


def test_django_transactions_reach_the_real_intake_and_are_stored_by_the_worker(live_server, transactional_db, broker):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from processing.models import TransactionName, TransactionRollup, TransactionTrace
    from processing.rollups import transactions_digest

    app_credentials_cache_clear()
    owner, organization, app, token = org_app_token_create()
    root = Path(__file__).resolve().parents[2]
    ids = {"ORGANIZATION_ID": organization.public_id, "APP_ID": app.public_id, "SECRET_TOKEN": token,
           "SERVERS": [live_server.url], "RELEASE": "2026.11.2"}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPBEAT_")},
        "DJANGO_SETTINGS_MODULE": "tests.apps.django_app.settings",
        "PYTHONPATH": os.pathsep.join([str(root / "agent"), str(root)]),
        "EXAMPLE_OPBEAT": json.dumps(ids),
    }
    # Its own process: a process configures Django once, and this one is Opbeat Server.
    result = subprocess.run([sys.executable, "-m", "tests.apps.django_app.live"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["statuses"] == [200, 200, 200, 200] and report["flushed"] is True
    assert report["stats"].get("transactions_sent") == 1 and not report["stats"].get("rejected"), report

    [envelope] = broker.envelopes()
    assert envelope["kind"] == "transactions" and envelope["app_id"] == app.pk
    assert transactions_digest(envelopes=[envelope]).rolled_up == 1
    counts: dict = {}
    for row in TransactionRollup.objects.filter(app=app, resolution=60).select_related("name"):
        counts[row.name.name] = counts.get(row.name.name, 0) + row.count
    # Named by URL pattern, never the raw path.
    assert counts == {TransactionName.TOTAL: 4, "GET /orders/<int:pk>/": 3, "GET /": 1}
    order = TransactionName.objects.get(app=app, name="GET /orders/<int:pk>/")
    [trace] = TransactionTrace.objects.filter(name=order)
    assert trace.release == "2026.11.2"
    kinds = {(span["signature"], span["kind"]) for span in trace.spans}
    assert ("SELECT FROM auth_user", "db.sqlite.sql") in kinds  # the ORM's queries, once each
    assert ("order.html", "template.django") in kinds
    assert ("get default", "cache.locmem") in kinds
    sql_spans = [span for span in trace.spans if span["kind"] == "db.sqlite.sql"]
    assert len(sql_spans) == 2
