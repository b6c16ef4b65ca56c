"""The example Flask app with the agent, sending to the real intake (Opbeat Server's own view,
served by Django's live server) with a real app's token: the intake answers 202 with the event's
dashboard URL, the event is on the queue for the worker, scrubbed as the agent sent it; the
worker's digest groups the app's errors into one issue, and the Location opens its page."""

from __future__ import annotations

import pytest

pytest.importorskip("flask")

from django.conf import settings  # noqa: E402

import opbeat_agent  # noqa: E402
from intake.auth import app_credentials_cache_clear  # noqa: E402
from tests.factories import org_app_create  # noqa: E402
from tests.intake.conftest import BrokerReader  # noqa: E402

from .flask_app import create_app  # noqa: E402


@pytest.fixture
def broker(request) -> BrokerReader:
    if settings.BROKER_URL.startswith(("amqp", "pyamqp")):
        request.getfixturevalue("rabbitmq_url")  # the real RabbitMQ, or skip (fail under REQUIRE_SERVICES=1)
    reader = BrokerReader()
    reader.purge()
    return reader


def test_flask_error_reaches_the_real_intake(live_server, transactional_db, broker, client):
    app_credentials_cache_clear()
    owner, organization, app = org_app_create()
    opbeat_agent.set_client(None)
    flask_app = create_app(
        ORGANIZATION_ID=organization.public_id,
        APP_ID=app.public_id,
        SECRET_TOKEN=app.secret_token,
        SERVERS=[live_server.url],
        RELEASE="v42",
        # The intake serves errors only so far (transactions come with the performance work).
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
