"""Intake fixtures: a fresh app with its token, the captured agent bodies as the agent sends them,
and a reader of what really landed in the broker (RabbitMQ when BROKER_URL is amqp, the SQLite
queue under var/queue otherwise)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from kombu import Connection, Exchange, Queue

from intake import queue as intake_queue
from intake import ratelimit, rejections
from intake.auth import app_credentials_cache_clear
from tests.factories import org_app_token_create

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "opbeat"
ERROR_FIXTURES = sorted(FIXTURES.glob("*_POST_errors.zlib"))


@dataclass
class AgentBody:
    name: str
    body: bytes
    headers: dict[str, str]
    event: dict


def agent_bodies() -> list[AgentBody]:
    out = []
    for path in ERROR_FIXTURES:
        captured = json.loads(path.with_suffix(".headers.json").read_text())
        out.append(
            AgentBody(
                name=path.stem,
                body=path.read_bytes(),
                headers=captured["headers"],
                event=json.loads(path.with_suffix(".json").read_text()),
            )
        )
    return out


def _wsgi_headers(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in headers.items():
        if key.lower() == "content-type":
            out["content_type"] = value
        else:
            out["HTTP_" + key.upper().replace("-", "_")] = value
    return out


@dataclass
class IntakeApp:
    app: object
    organization: object
    token: str  # the app's secret token in clear (the database keeps its hash)

    @property
    def url(self) -> str:
        return f"/api/v1/organizations/{self.organization.public_id}/apps/{self.app.public_id}/errors/"

    def post(self, client, body: bytes, *, token: str | None = None, headers: dict[str, str] | None = None):
        """POST like the original agent: its captured headers, our ids and token."""
        sent = {
            "Content-Type": "application/octet-stream",
            "User-Agent": "opbeat-python/3.6.1",
            "Authorization": f"Bearer {self.token if token is None else token}",
        }
        sent.update(headers or {})
        sent = {k: v for k, v in sent.items() if v is not None}
        return client.generic("POST", self.url, body, **_wsgi_headers(sent))


@pytest.fixture(autouse=True)
def intake_state_clean():
    # Apps are made fresh for each test, but primary keys repeat after a rollback: start every
    # test with empty caches and counters.
    app_credentials_cache_clear()
    cache.clear()
    rejections.rejections_pending_clear()
    ratelimit.quota_state_clear()
    yield
    app_credentials_cache_clear()
    rejections.rejections_pending_clear()
    ratelimit.quota_state_clear()


@pytest.fixture
def intake_app(db) -> IntakeApp:
    _, organization, app, token = org_app_token_create()
    return IntakeApp(app=app, organization=organization, token=token)


class BrokerReader:
    """Reads (and acks) the task messages the intake published, from the broker itself."""

    def _queue(self, connection: Connection, name: str) -> Queue:
        bound = Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)(
            connection.default_channel
        )
        bound.declare()
        return bound

    def messages(self, name: str) -> list[tuple[dict, list]]:
        """(headers, args) of every message waiting on queue ``name``."""
        out = []
        with Connection(settings.BROKER_URL, transport_options=settings.BROKER_TRANSPORT_OPTIONS) as connection:
            bound = self._queue(connection, name)
            while (message := bound.get(no_ack=False)) is not None:
                args, _kwargs, _embed = message.decode()
                out.append((message.headers, args))
                message.ack()
        return out

    def envelopes(self) -> list[dict]:
        out = []
        for headers, args in self.messages(intake_queue.EVENTS_QUEUE):
            assert headers["task"] == intake_queue.EVENTS_TASK
            out.extend(args[0])
        return out

    def purge(self) -> None:
        for name in (intake_queue.EVENTS_QUEUE, intake_queue.DEFAULT_QUEUE):
            self.messages(name)


@pytest.fixture
def broker(request) -> BrokerReader:
    if settings.BROKER_URL.startswith(("amqp", "pyamqp")):
        # Under BROKER_URL=amqp this must be the real RabbitMQ (fails under REQUIRE_SERVICES=1).
        request.getfixturevalue("rabbitmq_url")
    reader = BrokerReader()
    reader.purge()
    return reader
