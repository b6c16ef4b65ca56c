"""Helpers for the end-to-end tests: real server processes, private databases and vhosts, the
captured opbeat bodies, and bounded waits.

Everything here drives the product from outside, the way a person or an agent would: processes
started from the command line, HTTP in, HTML out. Nothing here imports the server's code.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import urlparse, urlunparse

import requests

REPO = Path(__file__).resolve().parents[2]
OPBEAT_FIXTURES = REPO / "tests" / "fixtures" / "opbeat"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every variable settings reads: a child starts from none of them, so the developer's or CI's
# environment never leaks into the stack under test.
SETTINGS_VARS = {
    "DATABASE_URL", "BROKER_URL", "REDIS_URL", "EMAIL_URL", "EMAIL_HOST", "SECRET_KEY", "ALLOWED_HOSTS",
    "BASE_URL", "DEBUG", "OPBEAT_VAR_DIR", "DJANGO_SETTINGS_MODULE",
}  # fmt: skip
# Generous: CI shares 2 cores between the browser, the servers and the worker.
DIGEST_TIMEOUT = 120.0
START_TIMEOUT = 90.0

T = TypeVar("T")


def port_free() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(probe: Callable[[], T], *, timeout: float, what: str, on_timeout: Callable[[], str] = lambda: "") -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` (and logs) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{on_timeout()}")
        time.sleep(0.5)


def child_env(var_dir: Path, **settings_env: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS and not k.startswith("OPBEAT_")}
    env.update(
        DJANGO_SETTINGS_MODULE="opbeat_server.settings",
        OPBEAT_VAR_DIR=str(var_dir),
        SECRET_KEY="e2e-" + uuid.uuid4().hex,
        PYTHONUNBUFFERED="1",
        **settings_env,
    )
    return env


@dataclass
class Process:
    """A server process started by a test, in its own process group, its output in a log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, name: str, argv: list[str], *, env: dict[str, str], log_dir: Path) -> "Process":
        log_path = log_dir / f"{name}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        return cls(name, popen, log_path)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return f"--- last lines of {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])

    def assert_running(self) -> None:
        assert self.popen.poll() is None, f"{self.name} exited with {self.popen.returncode}\n{self.log_tail()}"

    def stop(self, *, grace: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            # Workers and pool processes of the group must not outlive the test.
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.popen.wait()


def process_children(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc (Linux)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def manage(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def gunicorn_start(*, port: int, env: dict[str, str], log_dir: Path, workers: int = 2) -> Process:
    return Process.start(
        "gunicorn",
        [
            sys.executable, "-m", "gunicorn", "opbeat_server.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--access-logfile", "-",
            "--graceful-timeout", "5",
        ],
        env=env,
        log_dir=log_dir,
    )  # fmt: skip


def opbeat_run_start(*, port: int, env: dict[str, str], log_dir: Path) -> Process:
    """The embedded run (``manage.py opbeat_run``) with one web process on ``port``."""
    return Process.start(
        "opbeat_run",
        [sys.executable, "manage.py", "opbeat_run", "--port", str(port), "--workers", "1"],
        env=env,
        log_dir=log_dir,
    )


def worker_start(*, env: dict[str, str], log_dir: Path) -> Process:
    return Process.start(
        "celery-worker",
        [
            sys.executable, "-m", "celery", "-A", "opbeat_server", "worker",
            "-Q", "events,default", "--concurrency", "1", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"e2e-{uuid.uuid4().hex[:8]}@%h",
        ],
        env=env,
        log_dir=log_dir,
    )  # fmt: skip


def url_with_path(url: str, path: str) -> str:
    """The same server, another database or vhost: ``postgres://u@h:5432/x`` -> ``.../path``."""
    return urlunparse(urlparse(url)._replace(path="/" + path))


# --- PostgreSQL: a database of the test's own on the shared server ------------------------------


def postgres_database_create(server_url: str) -> str:
    import psycopg2

    name = f"opbeat_e2e_{uuid.uuid4().hex[:12]}"
    connection = psycopg2.connect(url_with_path(server_url, "postgres"))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return url_with_path(server_url, name)


def postgres_database_drop(database_url: str) -> None:
    import psycopg2

    name = urlparse(database_url).path.lstrip("/")
    connection = psycopg2.connect(url_with_path(database_url, "postgres"))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


def postgres_count(database_url: str, sql: str, params: tuple = ()) -> int:
    import psycopg2

    connection = psycopg2.connect(database_url, connect_timeout=3)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.fetchone()[0] or 0)
    finally:
        connection.close()


# --- RabbitMQ: a fresh vhost, so no other test's messages reach our worker -----------------------


def _rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def rabbitmq_vhost_create(broker_url: str) -> tuple[str, str | None]:
    """(broker URL to use, vhost to delete afterwards or None).

    A fresh vhost needs rabbitmqctl on this machine (CI and the dev box run RabbitMQ locally).
    Without it the test keeps the given vhost and purges our two queues first, which is enough
    when nothing else publishes there at the same time.
    """
    parsed = urlparse(broker_url)
    vhost = f"opbeat-e2e-{uuid.uuid4().hex[:12]}"
    user = parsed.username or "guest"
    if _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*"):
        return url_with_path(broker_url, vhost), vhost
    from kombu import Connection

    with Connection(broker_url) as connection:
        channel = connection.channel()
        for queue in ("events", "default"):
            try:
                channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - the queue does not exist yet: nothing to purge
                channel = connection.channel()
    return broker_url, None


def rabbitmq_vhost_delete(vhost: str | None) -> None:
    if vhost:
        _rabbitmqctl("delete_vhost", vhost)


# --- The captured bodies of the original opbeat module ---------------------------------------


@dataclass
class CapturedError:
    name: str
    headers: dict[str, str]
    body: bytes  # zlib-deflated JSON, exactly as the agent put it on the wire
    decoded: dict

    def expected_texts(self) -> list[str]:
        """What the event's page must show: the exception and its innermost frame, or the message."""
        exception = self.decoded.get("exception") or {}
        frames = (self.decoded.get("stacktrace") or {}).get("frames") or []
        if exception:
            texts = [exception["type"], exception.get("value") or ""]
            if frames:
                texts += [frames[-1]["function"], (frames[-1].get("context_line") or "").strip()]
            return [t for t in texts if t]
        return [self.decoded["message"]]


def captured_errors() -> list[CapturedError]:
    captured = []
    for body_path in sorted(OPBEAT_FIXTURES.glob("*errors.zlib")):
        stem = body_path.name[: -len(".zlib")]
        meta = json.loads((OPBEAT_FIXTURES / f"{stem}.headers.json").read_text())
        decoded = json.loads((OPBEAT_FIXTURES / f"{stem}.json").read_text())
        captured.append(CapturedError(stem, meta["headers"], body_path.read_bytes(), decoded))
    assert captured, f"no *errors.zlib fixtures in {OPBEAT_FIXTURES}"
    return captured


def captured_error_post(
    base_url: str, captured: CapturedError, *, organization_id: str, app_id: str, secret_token: str
) -> requests.Response:
    """Post the captured bytes with the agent's own headers, rewritten to our ids and token."""
    headers = dict(captured.headers)
    headers["Authorization"] = f"Bearer {secret_token}"
    url = f"{base_url}/api/v1/organizations/{organization_id}/apps/{app_id}/errors/"
    return requests.post(url, data=captured.body, headers=headers, timeout=30)


def captured_transactions_now() -> list[CapturedError]:
    """The original module's transactions bodies, moved to the current minute.

    The pages show recent ranges (the last hour by default) and the intake files durations under
    the body's own minute, so the bodies captured on one day would fall off the page on another.
    Each ``timestamp`` and root-trace ``start_time`` is shifted by the same amount, and the body is
    deflated again the way the agent does it.
    """
    import zlib
    from datetime import datetime, timezone

    now_minute = int(time.time() // 60) * 60
    bodies = []
    for json_path in sorted(OPBEAT_FIXTURES.glob("*transactions.json")):
        stem = json_path.name[: -len(".json")]
        meta = json.loads((OPBEAT_FIXTURES / f"{stem}.headers.json").read_text())
        decoded = json.loads(json_path.read_text())
        shift = None
        for item in decoded.get("transactions", []):
            original = datetime.fromisoformat(item["timestamp"].replace("Z", "+00:00")).timestamp()
            shift = now_minute - int(original // 60) * 60 if shift is None else shift
            item["timestamp"] = datetime.fromtimestamp(original + shift, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for trace in decoded.get("traces", []):
            if shift is not None and isinstance(trace.get("start_time"), (int, float)):
                trace["start_time"] = trace["start_time"] + shift * 1000
        body = zlib.compress(json.dumps(decoded).encode())
        bodies.append(CapturedError(stem, meta["headers"], body, decoded))
    assert bodies, f"no *transactions.json fixtures in {OPBEAT_FIXTURES}"
    return bodies


def captured_transactions_post(
    base_url: str, captured: CapturedError, *, organization_id: str, app_id: str, secret_token: str
) -> requests.Response:
    headers = dict(captured.headers)
    headers["Authorization"] = f"Bearer {secret_token}"
    url = f"{base_url}/api/v1/organizations/{organization_id}/apps/{app_id}/transactions/"
    return requests.post(url, data=captured.body, headers=headers, timeout=30)


# --- Reading pages without a browser ---------------------------------------------------------

_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_CREDENTIAL = r'id="{}"[^>]*>\s*([^<\s]+)\s*<'
ISSUE_EVENT_PATH = re.compile(r"/orgs/[0-9a-f]+/apps/[0-9a-f]+/issues/(\d+)/events/([0-9a-f-]+)/$")


def form_post(session: requests.Session, url: str, data: dict[str, str]) -> requests.Response:
    page = session.get(url, timeout=30)
    assert page.status_code == 200, f"GET {url}: {page.status_code}"
    match = _CSRF_INPUT.search(page.text)
    assert match, f"no CSRF token in the form at {url}"
    return session.post(url, data={"csrfmiddlewaretoken": match.group(1), **data}, timeout=30)


def credentials_read(settings_html: str) -> dict[str, str]:
    """The organization id, app id and secret token as the page after creating an app (or
    rotating its token) shows them: the only pages with the token."""
    found = {}
    for key, element_id in (("organization_id", "organization-id"), ("app_id", "app-id"), ("secret_token", "secret-token")):
        match = re.search(_CREDENTIAL.format(element_id), settings_html)
        assert match, f"the settings page shows no #{element_id}"
        found[key] = html.unescape(match.group(1))
    return found


def page_text(page_html: str) -> str:
    """The page as text, roughly as a person reads it: tags dropped, entities decoded."""
    without_scripts = re.sub(r"<(script|style)\b.*?</\1>", " ", page_html, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", without_scripts))
