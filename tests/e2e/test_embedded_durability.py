"""The embedded run keeps every 202 through a ``kill -9`` of its worker: ``manage.py opbeat_run`` on
SQLite and its on-disk queue, a burst of errors from a thread pool, the Celery worker killed in the
middle of it. The runner starts the worker again while the intake keeps answering, and in the end
the database holds exactly one event per 202: none lost, none counted twice.

The queue itself is also driven directly with kombu, from processes that are killed the same way.
(Redelivered events that were already stored are skipped by the digest:
tests/processing/test_digest.py.)"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from . import stack

BURST = 600
KILL_AFTER = 200


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _worker_pid(runner_pid: int) -> int | None:
    workers = [
        pid for pid in stack.process_children(runner_pid) if "-m celery" in _cmdline(pid) and stack.process_alive(pid)
    ]
    return workers[0] if len(workers) == 1 else None


@pytest.mark.e2e
def test_kill_9_of_the_worker_mid_burst_loses_no_accepted_event_and_counts_none_twice(var_dir: Path, log_dir: Path):
    # Every stored event stays stored for the count (pruning keeps 100 per issue by default). The
    # worker buffers what it fetched for 3 s before digesting it, so the kill finds it holding
    # messages however fast this machine is (kombu's filesystem queue lost those: 94 of 200 here).
    env = stack.child_env(var_dir, OPBEAT_EVENTS_KEPT_PER_ISSUE="100000", OPBEAT_DIGEST_FLUSH_SECONDS="3")
    stack.manage("migrate", "--noinput", env=env)
    credentials = json.loads(
        stack.manage(
            "opbeat_create_app", "--email", "burst@example.com", "--password", "correct horse battery 42",
            "--org", "Burst", "--app", "shop", env=env,
        ).strip().splitlines()[-1]
    )  # fmt: skip
    port = stack.port_free()
    base_url = f"http://127.0.0.1:{port}"
    runner = stack.opbeat_run_start(port=port, env=env, log_dir=log_dir)
    try:

        def started() -> bool:
            runner.assert_running()
            return "Opbeat Server is running at" in runner.log_path.read_text(errors="replace")

        def worker_ready() -> bool:
            runner.assert_running()
            return " ready." in runner.log_path.read_text(errors="replace")

        stack.wait_until(started, timeout=stack.START_TIMEOUT, what="opbeat_run's banner", on_timeout=runner.log_tail)
        # The banner means the web server listens; the kill must find a worker that consumes.
        stack.wait_until(
            worker_ready, timeout=stack.START_TIMEOUT, what="the worker's ready line", on_timeout=runner.log_tail
        )
        killed_pid = stack.wait_until(lambda: _worker_pid(runner.popen.pid), timeout=30, what="the celery worker")

        errors = stack.captured_errors()
        accepted = 0
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        killed = threading.Event()

        def post(error: stack.CapturedError) -> None:
            nonlocal accepted
            status = stack.captured_error_post(base_url, error, **credentials).status_code
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 202:
                    accepted += 1
                    if accepted == KILL_AFTER:
                        os.kill(killed_pid, signal.SIGKILL)
                        killed.set()

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(post, itertools.islice(itertools.cycle(errors), BURST)))

        assert killed.is_set()
        # The intake went on answering while the worker was down and starting again.
        assert statuses == {202: BURST}, statuses

        def restarted() -> bool:
            runner.assert_running()
            return "Started the celery worker again" in runner.log_path.read_text(errors="replace")

        stack.wait_until(restarted, timeout=60, what="the worker's restart", on_timeout=runner.log_tail)
        new_pid = _worker_pid(runner.popen.pid)
        assert new_pid is not None and new_pid != killed_pid

        def counts() -> tuple[int, int]:
            with sqlite3.connect(var_dir / "opbeat.sqlite3", timeout=20) as db:
                events = db.execute("SELECT count(*) FROM processing_event").fetchone()[0]
                counted = db.execute("SELECT coalesce(sum(event_count), 0) FROM processing_issue").fetchone()[0]
            return events, counted

        def queue_empty() -> bool:
            runner.assert_running()
            with sqlite3.connect(var_dir / "queue" / "queue.sqlite3", timeout=20) as db:
                return db.execute("SELECT count(*) FROM message WHERE queue = 'events'").fetchone()[0] == 0

        stack.wait_until(lambda: counts()[0] >= accepted and queue_empty(), timeout=stack.DIGEST_TIMEOUT,
                         what=f"{accepted} stored events and an empty queue", on_timeout=lambda: f"{counts()}\n{runner.log_tail()}")  # fmt: skip
        # Stored once each, and counted once each on their issues.
        assert counts() == (accepted, accepted)
    finally:
        assert runner.stop() == 0, runner.log_tail()


CONSUMER = """
import sys, time
import opbeat_server.queue_sqlite
from kombu import Connection, Consumer, Exchange, Queue
queue = Queue("events", Exchange("events", type="direct", durable=True), routing_key="events", durable=True)
connection = Connection("sqlite-queue://", transport_options={"path": sys.argv[1]})
channel = connection.channel()
channel.basic_qos(0, int(sys.argv[2]), False)
acked = []
def on_message(body, message):
    if sys.argv[3] == "ack" or len(acked) < int(sys.argv[3]):
        message.ack()
        acked.append(body)
with Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
    while True:
        try:
            connection.drain_events(timeout=2)
        except TimeoutError:
            break
print(" ".join(str(body["n"]) for body in acked), flush=True)
time.sleep(3600)  # until killed: what it holds unacked is held by a live process
"""


def _consumer(path: Path, *, prefetch: int, ack: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(path), str(prefetch), ack],
        stdout=subprocess.PIPE, text=True, cwd=stack.REPO, env={**os.environ, "PYTHONPATH": str(stack.REPO)},
    )  # fmt: skip


def test_the_queue_gives_a_killed_consumers_unacked_messages_to_the_next_and_never_an_acked_one(tmp_path: Path):
    from kombu import Connection, Exchange, Producer, Queue

    import opbeat_server.queue_sqlite  # noqa: F401 - registers sqlite-queue://

    path = tmp_path / "queue.sqlite3"
    queue = Queue("events", Exchange("events", type="direct", durable=True), routing_key="events", durable=True)
    with Connection("sqlite-queue://", transport_options={"path": str(path)}) as connection:
        producer = Producer(connection.channel())
        queue(producer.channel).declare()
        for n in range(50):
            producer.publish({"n": n}, exchange="events", routing_key="events", serializer="json")

    # Holds 20, acknowledges the first 5 of them, and is killed holding the other 15.
    first = _consumer(path, prefetch=20, ack="5")
    acked_first = first.stdout.readline().split()
    first.kill()
    first.wait()
    # The next consumer gets everything not acknowledged: the 15 held by the dead one and the 30
    # never fetched.
    second = _consumer(path, prefetch=1000, ack="ack")
    acked_second = second.stdout.readline().split()
    second.kill()
    second.wait()

    assert acked_first == [str(n) for n in range(5)]
    assert sorted(acked_second, key=int) == [str(n) for n in range(5, 50)]


def test_messages_left_by_the_former_filesystem_queue_are_moved_into_the_sqlite_queue(tmp_path: Path):
    """An upgrade keeps what the earlier embedded queue (kombu's filesystem transport) held."""
    from kombu import Connection, Consumer, Exchange, Producer, Queue

    from opbeat_server.queue_sqlite import filesystem_messages_import

    folder = tmp_path / "queue"
    folder.mkdir()
    queue = Queue("events", Exchange("events", type="direct", durable=True), routing_key="events", durable=True)
    filesystem = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
    }
    with Connection("filesystem://", transport_options=filesystem) as connection:
        producer = Producer(connection.channel())
        queue(producer.channel).declare()
        for n in range(3):
            producer.publish({"n": n}, exchange="events", routing_key="events", serializer="json")
    assert len(list(folder.glob("*.msg"))) == 3

    path = tmp_path / "queue" / "queue.sqlite3"
    assert filesystem_messages_import(folder=folder, path=path) == 3
    assert not list(folder.glob("*.msg"))

    received = []
    with Connection("sqlite-queue://", transport_options={"path": str(path)}) as connection:
        channel = connection.channel()
        queue(channel).declare()

        def on_message(body, message):
            received.append(body["n"])
            message.ack()

        with Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
            while len(received) < 3:
                connection.drain_events(timeout=5)
    # (The filesystem transport orders messages by the millisecond only.)
    assert sorted(received) == [0, 1, 2]
    assert filesystem_messages_import(folder=folder, path=path) == 0
