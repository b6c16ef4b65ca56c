"""While PostgreSQL is down the intake keeps answering 202 for apps it has seen (and 503 with
Retry-After for an app it has never seen), and the worker stores every accepted event once
PostgreSQL is back: none lost, none counted twice.

The shared PostgreSQL server is never stopped (other tests run on it): this test starts a private
cluster with the system's ``initdb``/``pg_ctl`` on a free port in a temporary directory, and points
gunicorn and a Celery worker at it (with the real RabbitMQ and Redis).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from . import stack

pytestmark = pytest.mark.e2e

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}
EVENTS_BEFORE = 4  # N: stored normally, so the intake has seen the app
EVENTS_DURING = 6  # M: posted while PostgreSQL is down


class PrivatePostgres:
    """A throwaway PostgreSQL cluster. initdb and pg_ctl refuse to run as root, so as root they run
    as the ``postgres`` user."""

    def __init__(self, bin_dir: Path, root: Path, port: int):
        self.bin_dir, self.root, self.port = bin_dir, root, port
        self.data = root / "data"
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self.run_as, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}\n{self.log_tail()}"

    def log_tail(self) -> str:
        log = self.root / "postgres.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def init(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-locale", "--no-sync")  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                  "-o", options, "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        # fast: clients are disconnected at once, as in an outage; the data stays.
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found or (os.geteuid() == 0 and not _has_user("postgres")):
        message = "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) or the postgres user are missing"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="opbeat-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = PrivatePostgres(Path(found[-1]).parent, root, stack.port_free())
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run(
            [*cluster.run_as, str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_intake_accepts_during_postgres_outage_and_worker_stores_every_event(
    private_postgres: PrivatePostgres, e2e_broker_url: str, redis_url: str, var_dir: Path, log_dir: Path
):
    import psycopg2

    admin = psycopg2.connect(private_postgres.url("postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("CREATE DATABASE opbeat")
    admin.close()
    database_url = private_postgres.url("opbeat")

    port = stack.port_free()
    base_url = f"http://127.0.0.1:{port}"
    env = stack.child_env(
        var_dir,
        DATABASE_URL=database_url,
        BROKER_URL=e2e_broker_url,
        REDIS_URL=redis_url,
        BASE_URL=base_url,
        # The intake's in-process token cache expires after a second, so during the outage it must
        # really fall back to what it remembers about the app (in Redis), not to a warm dict.
        OPBEAT_TOKEN_CACHE_SECONDS="1",
    )
    stack.manage("migrate", "--noinput", env=env)
    credentials = json.loads(
        stack.manage(
            "opbeat_create_app", "--email", "outage@example.com", "--password", "correct horse battery 42",
            "--org", "Outage", "--app", "shop", env=env,
        ).strip().splitlines()[-1]
    )  # fmt: skip
    # Created but never posted to: the intake has not seen it, so it cannot vouch for it mid-outage.
    unseen = json.loads(
        stack.manage(
            "opbeat_create_app", "--email", "outage@example.com", "--password", "correct horse battery 42",
            "--org", "Outage", "--app", "never-posted", env=env,
        ).strip().splitlines()[-1]
    )  # fmt: skip
    app_pk = stack.postgres_count(database_url, "SELECT id FROM accounts_app WHERE public_id = %s", (credentials["app_id"],))

    def stored() -> int:
        return stack.postgres_count(database_url, "SELECT count(*) FROM processing_event WHERE app_id = %s", (app_pk,))

    web = stack.gunicorn_start(port=port, env=env, log_dir=log_dir)
    worker = stack.worker_start(env=env, log_dir=log_dir)
    processes = [web, worker]

    def logs() -> str:
        return "\n".join(p.log_tail() for p in processes) + "\n--- postgres ---\n" + private_postgres.log_tail()

    captured = [e for e in stack.captured_errors() if e.decoded.get("exception")]
    try:
        stack.wait_until(lambda: stack.port_listening(port), timeout=stack.START_TIMEOUT, what="gunicorn", on_timeout=logs)

        for i in range(EVENTS_BEFORE):
            response = stack.captured_error_post(base_url, captured[i % len(captured)], **credentials)
            assert response.status_code == 202, f"before the outage: {response.status_code} {response.text}"
        stack.wait_until(lambda: stored() == EVENTS_BEFORE, timeout=stack.DIGEST_TIMEOUT, what="the first events", on_timeout=logs)

        private_postgres.stop()
        assert not stack.port_listening(private_postgres.port)
        # Past the in-process token cache: from here on the intake cannot ask PostgreSQL.
        time.sleep(1.5)
        for i in range(EVENTS_DURING):
            response = stack.captured_error_post(base_url, captured[i % len(captured)], **credentials)
            assert response.status_code == 202, f"during the outage: {response.status_code} {response.text}\n{logs()}"
            assert response.headers["Location"].startswith(f"{base_url}/orgs/{credentials['organization_id']}/")
        refused = stack.captured_error_post(base_url, captured[0], **unseen)
        assert refused.status_code == 503, f"unseen app during the outage: {refused.status_code} {refused.text}"
        assert refused.headers.get("Retry-After")
        # Give the worker time to take the messages and meet the outage (it must hold them, unacked).
        time.sleep(5)
        for process in processes:
            process.assert_running()

        private_postgres.start()
        stack.wait_until(
            lambda: stored() >= EVENTS_BEFORE + EVENTS_DURING,
            timeout=stack.DIGEST_TIMEOUT,
            what="the events posted during the outage",
            on_timeout=lambda: f"stored {stored()}\n{logs()}",
        )
        # Exactly N+M: nothing lost, nothing stored twice, and the issues counted each event once.
        assert stored() == EVENTS_BEFORE + EVENTS_DURING
        counted = stack.postgres_count(
            database_url, "SELECT sum(event_count) FROM processing_issue WHERE app_id = %s", (app_pk,)
        )
        assert counted == EVENTS_BEFORE + EVENTS_DURING
        for process in processes:
            process.assert_running()
    finally:
        for process in processes:
            process.stop()
