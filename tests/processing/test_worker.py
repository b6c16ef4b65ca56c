"""A real Celery worker process digesting what the intake publishes, through RabbitMQ into
PostgreSQL, including an outage of the database during which nothing may be lost or counted twice.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from kombu import Connection, Exchange, Queue

from intake.queue import EVENTS_QUEUE, events_enqueue
from processing.models import Event, Issue
from tests.factories import org_app_create
from tests.processing.helpers import ERROR_FIXTURES, envelope
from tests.processing.tcp_proxy import TcpRelay

CELERY = Path(sys.executable).parent / "celery"
ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def events_queue_purge(broker_url: str) -> None:
    # Messages a previous, interrupted run left behind would name apps of another test database.
    with Connection(broker_url) as conn:
        queue = Queue(EVENTS_QUEUE, Exchange(EVENTS_QUEUE, type="direct", durable=True), routing_key=EVENTS_QUEUE, durable=True)
        bound = queue(conn.channel())
        bound.declare()
        bound.purge()


def database_url_through(relay: TcpRelay) -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "postgres") + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@127.0.0.1:{relay.port}/{quote(db['NAME'])}"


def worker_start(*, env: dict, log_path: Path) -> subprocess.Popen:
    command = [
        str(CELERY), "-A", "opbeat_server", "worker", "-Q", "events,default", "--pool=solo",
        "--without-gossip", "--without-mingle", "-n", f"h3-test-{uuid.uuid4().hex[:8]}@%h", "-l", "INFO",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def worker_stop(worker: subprocess.Popen) -> int:
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        raise AssertionError("the worker did not stop within 30 s of SIGTERM") from None


@pytest.fixture
def relayed_worker_env(postgres_url, rabbitmq_url, tmp_path):
    """Environment for a worker process whose PostgreSQL connections go through a TcpRelay."""
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs a database it can share with the test (PostgreSQL)")
    events_queue_purge(rabbitmq_url)
    db = connection.settings_dict
    relay = TcpRelay((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    env = {
        **os.environ,
        "DATABASE_URL": database_url_through(relay),
        "BROKER_URL": rabbitmq_url,
        "OPBEAT_VAR_DIR": str(tmp_path / "var"),
        "OPBEAT_DIGEST_FLUSH_SECONDS": "0.2",
        "LOG_LEVEL": "INFO",
    }
    yield relay, env
    relay.close()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_worker_digests_published_events_and_outlasts_a_database_outage(relayed_worker_env, tmp_path):
    relay, env = relayed_worker_env
    _, _, app = org_app_create()
    log_path = tmp_path / "worker.log"
    worker = worker_start(env=env, log_path=log_path)
    try:
        bodies = [json.loads(path.read_text()) for path in ERROR_FIXTURES]
        first = [envelope(app, body) for body in bodies]
        events_enqueue(first[:4])
        events_enqueue(first[4:])
        wait_for(lambda: Event.objects.filter(app=app).count() == 7, seconds=60, what="7 events stored")
        assert Issue.objects.filter(app=app).count() == 5
        zero = Issue.objects.get(app=app, culprit="bench.views.error")
        assert zero.event_count == 2

        relay.cut()
        during = [envelope(app, bodies[0]) for _ in range(3)]
        events_enqueue(during[:2])
        events_enqueue([during[2], first[0]])  # first[0] again: a redelivery must not count
        wait_for(lambda: b"(attempt 2)" in log_path.read_bytes(), seconds=30, what="the worker to retry twice")
        assert Event.objects.filter(app=app).count() == 7
        relay.restore()

        wait_for(lambda: Event.objects.filter(app=app).count() == 10, seconds=90, what="10 events stored after the outage")
        time.sleep(1)  # a double count would show up as an 11th event or a wrong total
        assert Event.objects.filter(app=app).count() == 10
        # bodies[0] is a Django ZeroDivisionError: 2 before, 3 during the outage, the redelivery not counted.
        zero.refresh_from_db()
        assert Event.objects.get(event_id=uuid.UUID(first[0]["event_id"])).issue_id == zero.pk
        assert zero.event_count == Event.objects.filter(issue=zero).count() == 5
    finally:
        code = worker_stop(worker)
    assert code == 0, log_path.read_text()[-3000:]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_worker_stopped_during_an_outage_hands_its_events_back(relayed_worker_env, tmp_path):
    relay, env = relayed_worker_env
    _, _, app = org_app_create()
    log_path = tmp_path / "worker.log"
    worker = worker_start(env=env, log_path=log_path)
    try:
        wait_for(lambda: b" ready." in log_path.read_bytes(), seconds=60, what="the worker to be ready")
        relay.cut()
        batch = [envelope(app, {"message": "stored after a restart", "user": {"id": i}}) for i in range(3)]
        events_enqueue(batch)
        wait_for(lambda: b"(attempt 2)" in log_path.read_bytes(), seconds=30, what="the worker to retry twice")
    finally:
        worker_stop(worker)  # a warm shutdown in the middle of the wait: the messages are not acknowledged
    assert not Event.objects.filter(app=app).exists()

    relay.restore()
    worker = worker_start(env=env, log_path=log_path)
    try:
        wait_for(lambda: Event.objects.filter(app=app).count() == 3, seconds=60, what="3 events stored by the next worker")
        time.sleep(1)
    finally:
        worker_stop(worker)
    issue = Issue.objects.get(app=app)
    assert (issue.event_count, issue.users_count) == (3, 3)
    assert Event.objects.filter(app=app).count() == 3

PUBLISH_FIXTURES = """
import json, sys, time
import django
django.setup()
from intake.queue import envelope_new, events_enqueue
from tests.factories import org_app_create
from tests.processing.helpers import ERROR_FIXTURES
_, _, app = org_app_create()
for path in ERROR_FIXTURES:
    events_enqueue([envelope_new(kind="error", app_id=app.pk, received_at=time.time(), data=json.loads(path.read_text()))])
print(app.pk)
"""


def test_embedded_worker_digests_from_the_on_disk_queue_into_sqlite(tmp_path):
    """The default mode, as a fresh clone runs it: SQLite file and the SQLite queue under var/queue."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "BROKER_URL", "REDIS_URL"}}
    env |= {"OPBEAT_VAR_DIR": str(tmp_path), "OPBEAT_DIGEST_FLUSH_SECONDS": "0.2", "DJANGO_SETTINGS_MODULE": "opbeat_server.settings"}
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    published = subprocess.run([python, "-c", PUBLISH_FIXTURES], cwd=ROOT, env=env, check=True, timeout=60, capture_output=True, text=True)
    app_id = int(published.stdout.strip().splitlines()[-1])
    log_path = tmp_path / "worker.log"
    command = [str(CELERY), "-A", "opbeat_server", "worker", "-Q", "events,default", "--pool=solo", "-l", "INFO"]
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def rows(sql: str) -> list[tuple]:
        with sqlite3.connect(tmp_path / "opbeat.sqlite3", timeout=20) as db:
            return db.execute(sql, (app_id,)).fetchall()

    try:
        wait_for(lambda: rows("SELECT count(*) FROM processing_event WHERE app_id = ?") == [(7,)], seconds=60, what="7 events in SQLite")
        counts = sorted(count for (count,) in rows("SELECT event_count FROM processing_issue WHERE app_id = ?"))
        assert counts == [1, 1, 1, 2, 2]
    finally:
        code = worker_stop(worker)
    assert code == 0, log_path.read_text()[-3000:]
