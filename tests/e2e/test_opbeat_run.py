"""``manage.py opbeat_run`` keeps its processes running: one that dies is started again while the
others keep serving, and Ctrl-C or SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import requests

from . import stack

pytestmark = pytest.mark.e2e


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_dead_worker_is_started_again_while_the_web_server_keeps_serving(var_dir: Path, log_dir: Path):
    port = stack.port_free()
    runner = stack.opbeat_run_start(port=port, env=stack.child_env(var_dir), log_dir=log_dir)
    try:

        def started() -> bool:
            runner.assert_running()
            return "Opbeat Server is running at" in runner.log_path.read_text(errors="replace")

        def workers() -> list[int]:
            return [pid for pid in stack.process_children(runner.popen.pid) if "-m celery" in _cmdline(pid)]

        stack.wait_until(started, timeout=stack.START_TIMEOUT, what="opbeat_run's banner", on_timeout=runner.log_tail)
        children = stack.process_children(runner.popen.pid)
        (web,) = [pid for pid in children if "granian" in _cmdline(pid)]
        (worker,) = workers()

        os.kill(worker, signal.SIGKILL)

        def restarted() -> list[int]:
            runner.assert_running()
            log = runner.log_path.read_text(errors="replace")
            return "Started the celery worker again" in log and [pid for pid in workers() if pid != worker]

        children += stack.wait_until(restarted, timeout=60, what="a new celery worker", on_timeout=runner.log_tail)
        log = runner.log_path.read_text(errors="replace")
        assert "The celery worker exited with code -9 after " in log
        assert "starting it again in 1 s." in log
        # The web server was left alone: the same process, still answering.
        assert stack.process_alive(web) and stack.port_listening(port)
        assert requests.get(f"http://127.0.0.1:{port}/login/", timeout=10).status_code == 200
    finally:
        code = runner.stop()
    # SIGTERM still stops everything, and a stop asked for is a clean exit.
    assert code == 0, runner.log_tail()
    assert not [pid for pid in children if stack.process_alive(pid)]
    assert not stack.port_listening(port)


def test_a_busy_port_is_refused_before_anything_starts(var_dir: Path, log_dir: Path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        runner = stack.Process.start(
            "opbeat_run",
            [sys.executable, "manage.py", "opbeat_run", "--port", str(port)],
            env=stack.child_env(var_dir),
            log_dir=log_dir,
        )
        try:
            assert runner.popen.wait(timeout=60) != 0
        finally:
            runner.stop()
    assert f"127.0.0.1:{port} is already in use" in runner.log_path.read_text(errors="replace")
    # It refused before migrating: nothing was created under var/.
    assert not (var_dir / "opbeat.sqlite3").exists()


def test_embedded_queue_keeps_events_across_a_restart(var_dir: Path, log_dir: Path):
    """Embedded mode's on-disk queue: events accepted while no worker runs are digested once
    ``opbeat_run`` starts, from the files under var/queue."""
    import json
    import sqlite3

    env = stack.child_env(var_dir)
    stack.manage("migrate", "--noinput", env=env)
    credentials = json.loads(
        stack.manage(
            "opbeat_create_app", "--email", "queue@example.com", "--password", "correct horse battery 42",
            "--org", "Queue", "--app", "shop", env=env,
        ).strip().splitlines()[-1]
    )  # fmt: skip

    # Only a web server: the intake accepts and queues, nobody digests.
    web_port = stack.port_free()
    web = stack.gunicorn_start(port=web_port, env={**env, "BASE_URL": f"http://127.0.0.1:{web_port}"}, log_dir=log_dir)
    captured = [e for e in stack.captured_errors() if e.decoded.get("exception")]
    try:
        stack.wait_until(
            lambda: stack.port_listening(web_port),
            timeout=stack.START_TIMEOUT,
            what="gunicorn",
            on_timeout=web.log_tail,
        )
        for error in captured:
            response = stack.captured_error_post(f"http://127.0.0.1:{web_port}", error, **credentials)
            assert response.status_code == 202, f"{error.name}: {response.status_code} {response.text}"
    finally:
        web.stop()
    assert any((var_dir / "queue").iterdir()), "nothing was queued on disk"

    def stored() -> int:
        with sqlite3.connect(var_dir / "opbeat.sqlite3", timeout=20) as db:
            return db.execute("SELECT count(*) FROM processing_event").fetchone()[0]

    assert stored() == 0
    port = stack.port_free()
    runner = stack.opbeat_run_start(port=port, env=env, log_dir=log_dir)
    try:

        def digested() -> bool:
            runner.assert_running()
            return stored() >= len(captured)

        stack.wait_until(digested, timeout=stack.DIGEST_TIMEOUT, what="the queued events", on_timeout=runner.log_tail)
        assert stored() == len(captured)
    finally:
        runner.stop()
