"""POST /api/v1/organizations/<org>/apps/<app>/errors/ as the original opbeat agent sends it:
202 + Location and the envelope really in the broker; every bad input a 4xx with a JSON reason,
counted by app and reason; the intake keeps serving after each; quotas; token rotation; the
query budget of the hot path."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import pytest
from django.conf import settings
from django.core.cache import cache

from accounts.services import app_token_rotate
from intake import queue as intake_queue
from intake import ratelimit, rejections
from intake.auth import app_credentials_cache_clear

from .conftest import agent_bodies

AGENT_BODIES = agent_bodies()
GOOD = next(b for b in AGENT_BODIES if "django" in b.name)


def error_json(response) -> str:
    assert response["Content-Type"] == "application/json"
    payload = json.loads(response.content)
    assert isinstance(payload["error"], str) and payload["error"]
    return payload["error"]


def assert_still_serving(intake_app, client, broker):
    response = intake_app.post(client, GOOD.body)
    assert response.status_code == 202, response.content
    assert [e["data"] for e in broker.envelopes()] == [GOOD.event]


@pytest.mark.parametrize("captured", AGENT_BODIES, ids=lambda b: b.name)
def test_captured_agent_body_is_accepted_and_queued(intake_app, client, broker, captured):
    # The captured headers, as sent (only our ids and token differ).
    headers = {k: v for k, v in captured.headers.items() if k != "Authorization"}
    response = intake_app.post(client, captured.body, headers=headers)
    assert response.status_code == 202, response.content
    body = json.loads(response.content)
    event_id = body["id"]
    org, app = intake_app.organization.public_id, intake_app.app.public_id
    expected = f"{settings.BASE_URL}/orgs/{org}/apps/{app}/events/{event_id}/"
    assert response["Location"] == expected == body["location"]

    [envelope] = broker.envelopes()
    assert envelope["v"] == intake_queue.ENVELOPE_VERSION
    assert envelope["kind"] == "error"
    assert envelope["event_id"] == event_id and len(event_id) == 32
    assert envelope["app_id"] == intake_app.app.pk
    assert envelope["data"] == captured.event  # unknown fields (organization_id, app_id...) kept


def test_location_points_at_the_dashboard_event_redirect(intake_app, client, broker):
    from django.urls import reverse

    response = intake_app.post(client, GOOD.body)
    event_id = json.loads(response.content)["id"]
    path = reverse(
        "dashboards:event_redirect",
        kwargs={"org_id": intake_app.organization.public_id, "app_id": intake_app.app.public_id, "event_id": event_id},
    )
    assert response["Location"] == settings.BASE_URL + path


def test_gzip_and_plain_json_are_accepted(intake_app, client, broker):
    raw = json.dumps(GOOD.event).encode()
    assert intake_app.post(client, gzip.compress(raw), headers={"Content-Encoding": "gzip"}).status_code == 202
    assert intake_app.post(client, raw, headers={"Content-Type": "application/json"}).status_code == 202
    assert [e["data"] for e in broker.envelopes()] == [GOOD.event, GOOD.event]


def test_url_without_trailing_slash_is_accepted_not_redirected(intake_app, client, broker):
    response = client.generic(
        "POST", intake_app.url.rstrip("/"), GOOD.body, HTTP_AUTHORIZATION=f"Bearer {intake_app.token}"
    )
    assert response.status_code == 202


def _bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(b'{"message": "')]
    block = b"a" * (1024 * 1024)
    parts += [compressor.compress(block) for _ in range(256)]
    return b"".join(parts) + compressor.compress(b'"}') + compressor.flush()


TWO_MB_EVENT = json.dumps({"message": "m", "extra": {"blob": "x" * (2 * 1024 * 1024)}}).encode()
BAD_BODIES = {
    "empty body": (b"", 400, "empty body"),
    "invalid JSON": (zlib.compress(b'{"message": "unterminated'), 400, "not valid JSON"),
    "not an object": (zlib.compress(b"[1, 2]"), 400, "JSON object"),
    "wrong types": (
        zlib.compress(b'{"exception": {"type": "E"}, "stacktrace": {"frames": [{"lineno": "ten"}]}}'),
        400,
        "$.stacktrace.frames[0].lineno",
    ),
    "no message": (zlib.compress(b'{"level": "error"}'), 400, "at least one of"),
    "2 MB event plain": (TWO_MB_EVENT, 413, "limit"),
    "2 MB event compressed": (zlib.compress(TWO_MB_EVENT), 413, "limit"),
    "gzip bomb": (_bomb(), 413, "limit"),
    "deep nesting": (zlib.compress(b'{"message": "m", "extra": ' + b"[" * 500 + b"]" * 500 + b"}"), 400, "nested"),
    "invalid UTF-8": (zlib.compress(b'{"message": "\xff\xfe"}'), 400, "UTF-8"),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_gets_a_clear_4xx_and_the_intake_keeps_serving(intake_app, client, broker, name):
    body, status, words = BAD_BODIES[name]
    response = intake_app.post(client, body)
    assert response.status_code == status
    assert words in error_json(response)
    assert broker.envelopes() == []
    assert_still_serving(intake_app, client, broker)


def test_wrong_token_is_403(intake_app, client, broker):
    response = intake_app.post(client, GOOD.body, token="not-the-token")
    assert response.status_code == 403
    assert "wrong secret token" in error_json(response)
    assert broker.envelopes() == []
    assert_still_serving(intake_app, client, broker)


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "])
def test_missing_or_malformed_authorization_is_401(intake_app, client, broker, authorization):
    response = intake_app.post(client, GOOD.body, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert "Authorization" in error_json(response)
    assert_still_serving(intake_app, client, broker)


def test_unknown_app_and_unknown_org_are_404(intake_app, client, broker):
    org, app = intake_app.organization.public_id, intake_app.app.public_id
    auth = {"HTTP_AUTHORIZATION": f"Bearer {intake_app.token}"}
    for path in (
        f"/api/v1/organizations/{org}/apps/0000000000000000/errors/",
        f"/api/v1/organizations/0000000000000000/apps/{app}/errors/",
    ):
        response = client.generic("POST", path, GOOD.body, **auth)
        assert response.status_code == 404
        assert "no app" in error_json(response)
    assert_still_serving(intake_app, client, broker)


def test_another_orgs_token_does_not_open_this_app(intake_app, client, broker, db):
    from tests.factories import org_app_token_create

    _, _, _, other_token = org_app_token_create()
    response = intake_app.post(client, GOOD.body, token=other_token)
    assert response.status_code == 403


def test_other_api_paths_and_methods_answer_json(intake_app, client):
    response = client.get(intake_app.url)
    assert response.status_code == 405 and response["Allow"] == "POST"
    error_json(response)
    response = client.post("/api/v1/organizations/x/apps/y/nothing-here/", b"{}", content_type="application/json")
    assert response.status_code == 404
    error_json(response)


def test_over_quota_is_429_with_retry_after(intake_app, client, broker):
    intake_app.app.events_per_minute = 2
    intake_app.app.save(update_fields=["events_per_minute"])
    statuses, retry_after = [], None
    # Five posts against a quota of two: at most one minute boundary can fall between them,
    # so at least one is refused whatever the clock says.
    for _ in range(5):
        response = intake_app.post(client, GOOD.body)
        statuses.append(response.status_code)
        if response.status_code == 429:
            retry_after = int(response["Retry-After"])
            assert "quota of 2 events per minute" in error_json(response)
    assert statuses[:2] == [202, 202]
    assert 429 in statuses
    assert 1 <= retry_after <= 60
    assert len(broker.envelopes()) == statuses.count(202)


def test_rotated_token_stops_working_once_the_cache_expires(intake_app, client, broker, settings):
    old = intake_app.token
    assert intake_app.post(client, GOOD.body).status_code == 202
    new = app_token_rotate(app=intake_app.app)
    # Within the cache TTL (30 s by default) the process still knows the old token...
    assert intake_app.post(client, GOOD.body, token=old).status_code == 202
    # ...and once it has expired (TTL 0 here) only the new one works.
    settings.OPBEAT_LIMITS = {**settings.OPBEAT_LIMITS, "token_cache_seconds": 0}
    app_credentials_cache_clear()
    assert intake_app.post(client, GOOD.body, token=old).status_code == 403
    assert intake_app.post(client, GOOD.body, token=new).status_code == 202


def test_query_budget_cold_one_warm_zero(intake_app, client, broker, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        assert intake_app.post(client, GOOD.body).status_code == 202
    with django_assert_max_num_queries(0):
        assert intake_app.post(client, GOOD.body).status_code == 202
        assert intake_app.post(client, GOOD.body, token="wrong").status_code == 403


def test_rejections_reach_the_worker_queue_counted_by_app_and_reason(intake_app, client, broker):
    intake_app.post(client, GOOD.body, token="wrong")
    intake_app.post(client, GOOD.body, token="wrong")
    intake_app.post(client, b"")
    intake_app.post(client, BAD_BODIES["gzip bomb"][0])
    rejections.rejections_flush()
    totals: dict[str, int] = {}
    # The background flusher may have shipped some already: read everything that was published.
    for headers, args in broker.messages(intake_queue.DEFAULT_QUEUE):
        assert headers["task"] == intake_queue.REJECTIONS_TASK
        for row in args[0]:
            assert set(row) == {"app_id", "reason", "hour", "count", "status", "example"} and row["hour"] % 3600 == 0
            if row["app_id"] == intake_app.app.pk:
                totals[row["reason"]] = totals.get(row["reason"], 0) + row["count"]
    assert totals == {"forbidden": 2, "invalid": 1, "too_large": 1}


@pytest.mark.django_db(transaction=True)
def test_database_down_seen_app_still_accepted_unseen_app_503(client, broker):
    """PostgreSQL unreachable (the connection points at a closed port): apps seen before keep
    getting 202 from the second-tier cache; an app never seen gets 503 with a JSON reason."""
    from django.db import connection

    from tests.factories import org_app_token_create

    from .conftest import IntakeApp

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (the in-memory SQLite test database cannot be taken away)")
    _, organization, app, token = org_app_token_create()
    seen = IntakeApp(app=app, organization=organization, token=token)
    _, organization2, app2, token2 = org_app_token_create()
    unseen = IntakeApp(app=app2, organization=organization2, token=token2)
    assert seen.post(client, GOOD.body).status_code == 202
    broker.envelopes()

    app_credentials_cache_clear()  # as if the process cache had expired
    saved_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        response = seen.post(client, GOOD.body)
        assert response.status_code == 202, response.content
        assert [e["app_id"] for e in broker.envelopes()] == [app.pk]
        response = unseen.post(client, GOOD.body)
        assert response.status_code == 503
        assert response["Retry-After"] == "30"
        assert "database is unavailable" in error_json(response)
    finally:
        connection.close()
        connection.settings_dict["PORT"] = saved_port
    app_credentials_cache_clear()
    assert unseen.post(client, GOOD.body).status_code == 202


BROKER_DOWN_SCRIPT = """
import json, sys, django
django.setup()
from django.test import Client
url, token, path = sys.argv[1:4]
response = Client().generic("POST", url, open(path, "rb").read(), HTTP_AUTHORIZATION="Bearer " + token,
                            HTTP_HOST="127.0.0.1")
print(json.dumps({"status": response.status_code, "retry_after": response.get("Retry-After"),
                  "body": json.loads(response.content)}))
"""


@pytest.mark.django_db(transaction=True)
def test_broker_unreachable_is_503_with_a_json_reason(rabbitmq_url, tmp_path):
    """An intake process whose RabbitMQ is unreachable (a closed port) answers 503, not 202 and
    not a hang. Run as a separate process: this one's publisher is connected to the real broker."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from django.db import connection

    from tests.factories import org_app_token_create

    from .conftest import ERROR_FIXTURES, IntakeApp

    if connection.vendor != "postgresql":
        pytest.skip("the other process must see this test's rows: needs PostgreSQL")
    _, organization, app, token = org_app_token_create()
    intake_app = IntakeApp(app=app, organization=organization, token=token)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "BROKER_URL": "amqp://guest:guest@127.0.0.1:1/h2",
        "OPBEAT_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "opbeat_server.settings",
    }
    out = subprocess.run(
        [sys.executable, "-c", BROKER_DOWN_SCRIPT, intake_app.url, intake_app.token, str(ERROR_FIXTURES[0])],
        env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 503
    assert result["retry_after"] == "30"
    assert "queue is unreachable" in result["body"]["error"]


def test_rate_limiter_unreachable_keeps_counting_per_process(intake_app, client, broker, redis_url, settings):
    # Redis for the quota on a closed port: events under quota still go through (a quota is not
    # worth losing events over), and what this process counted itself still enforces the quota.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    intake_app.app.events_per_minute = 2
    intake_app.app.save(update_fields=["events_per_minute"])
    assert intake_app.post(client, GOOD.body).status_code == 202
    ratelimit.quota_sync()  # fails against the closed port, keeps the count
    assert intake_app.post(client, GOOD.body).status_code == 202
    assert intake_app.post(client, GOOD.body).status_code == 429
    assert len(broker.envelopes()) == 2


def test_quota_is_shared_by_every_intake_process(intake_app, client, broker, redis_url):
    # Another intake process has already taken 9 of this minute's 10 events: once this process
    # syncs with Redis, it refuses after the tenth event, not after its own tenth.
    import redis

    intake_app.app.events_per_minute = 10
    intake_app.app.save(update_fields=["events_per_minute"])
    shared = redis.Redis.from_url(redis_url)
    for _attempt in range(3):  # a minute boundary between the steps makes the counts start over
        minute = int(time.time()) // 60
        key = f"intake:rate:{intake_app.app.pk}:{minute}"
        assert intake_app.post(client, GOOD.body).status_code == 202
        shared.incrby(key, 8)
        ratelimit.quota_sync(refresh=True)
        statuses = [intake_app.post(client, GOOD.body).status_code for _ in range(3)]
        if int(time.time()) // 60 == minute:
            break
        cache.clear()
        ratelimit.quota_state_clear()
    ratelimit.quota_sync()
    assert int(shared.get(key)) == 10, "this process's accepted events were added to the shared count"
    assert statuses == [202, 429, 429]


def test_quota_keys_expire(intake_app, client, broker, redis_url):
    # Every minute makes a new key per app: the process that creates one gives it a TTL, or
    # Redis would keep them all.
    import redis

    shared = redis.Redis.from_url(redis_url)
    for _attempt in range(3):
        minute = int(time.time()) // 60
        assert intake_app.post(client, GOOD.body).status_code == 202
        ratelimit.quota_sync()
        if int(time.time()) // 60 == minute:
            break
    ttl = shared.ttl(f"intake:rate:{intake_app.app.pk}:{minute}")
    assert 0 < ttl <= ratelimit.KEY_SECONDS
