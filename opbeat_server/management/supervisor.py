"""Start the web server and the Celery worker as child processes, and keep them running.

This is the embedded mode's process manager (``manage.py opbeat_run``). A child that exits is
started again after a backoff (1 s, doubling up to 30 s, back to 1 s once it had run a minute),
while the others keep serving: the intake goes on answering 202 into the durable queue while the
worker restarts, and the restarted worker digests what piled up. A child that dies within a minute
of starting, over and over, makes the runner give up and exit non-zero, so an outer supervisor
(systemd, a container runtime) and a person see that something is wrong rather than a service
that restarts itself forever in the background. It never touches the database or the queue; it
only starts, watches and stops processes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# A child gets SIGTERM when the runner dies, even by SIGKILL, so no orphan keeps the port (Linux only).
_PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    # Deaths in a row, each within Backoff.stable_seconds of its start.
    quick_deaths: int = 0
    restart_at: float | None = None


@dataclass(frozen=True)
class Backoff:
    first_seconds: float = 1.0
    max_seconds: float = 30.0
    # A child that ran this long before dying is healthy again: its next restart waits first_seconds.
    stable_seconds: float = 60.0
    # Quick deaths in a row before the runner gives up: 1+2+4+8+16+30+30+30 s of retrying, about
    # two minutes, long enough to outlast a brief outage of what a child needs (the disk, a lock).
    max_quick_deaths: int = 8

    def delay(self, quick_deaths: int) -> float:
        return min(self.first_seconds * 2 ** max(quick_deaths - 1, 0), self.max_seconds)


class ChildKeepsDying(Exception):
    """A child died quickly after each of Backoff.max_quick_deaths restarts."""

    def __init__(self, child: Child) -> None:
        super().__init__(child.name)
        self.child = child


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        # Not Linux (no libc.so.6): the runner still stops its children on Ctrl-C and SIGTERM.
        pass


def web_argv(*, host: str, port: int, workers: int) -> list[str]:
    # granian rather than gunicorn: measured here it serves the intake's small JSON posts ~2.5x faster
    # (see the figures and bench/intake), and it runs from the same virtualenv.
    return [
        sys.executable, "-m", "granian",
        "--interface", "wsgi",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
        "--no-ws",
        # Without a cap granian allows hundreds of request threads per worker; 32 keeps the Python
        # side bounded on a small machine while the intake still shares publishes across requests.
        "--backpressure", "32",
        # A client gets 10 s (granian's default: 30) to send its headers; the body has its own limit
        # in the intake (OPBEAT_BODY_READ_SECONDS).
        "--http1-header-read-timeout", "10000",
        "opbeat_server.wsgi:application",
    ]  # fmt: skip


def worker_argv(*, concurrency: int, schedule_path: Path) -> list[str]:
    # One process with beat embedded (-B): the embedded mode runs exactly one worker, so beat cannot
    # be started twice; the beat schedule lives under var/ with the rest of the state.
    return [
        sys.executable, "-m", "celery",
        "-A", "opbeat_server",
        "worker", "-B",
        "-Q", "events,default",
        "--concurrency", str(concurrency),
        "--schedule", str(schedule_path),
        "--loglevel", "INFO",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def port_check_free(*, host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_wait_listening(*, host: str, port: int, children: list[Child], timeout: float) -> bool:
    """True once something accepts connections on host:port; False on timeout or a child's death."""
    connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child_exited(children) is not None:
            return False
        try:
            with socket.create_connection((connect_host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def child_start(*, child: Child, env: dict[str, str]) -> None:
    child.process = subprocess.Popen(
        child.argv,
        env=env,
        # Own process group: a Ctrl-C in the terminal reaches only the runner, which then stops
        # the children in order instead of every process racing its own shutdown.
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    child.started_at = time.monotonic()


def children_start(*, children: list[Child], env: dict[str, str]) -> None:
    for child in children:
        child_start(child=child, env=env)


def _group_kill(child: Child) -> None:
    # The group id is the child's pid (start_new_session); it also holds granian's workers and
    # Celery's pool processes, which must not outlive their parent (a pool process left behind
    # by a killed worker could still be writing a batch when the new worker starts).
    try:
        os.killpg(child.process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def child_exited(children: list[Child]) -> Child | None:
    for child in children:
        if child.process is not None and child.process.poll() is not None:
            return child
    return None


def children_stop(*, children: list[Child], grace_seconds: float) -> None:
    """SIGTERM each child (a warm shutdown: Celery finishes its batch, granian its requests), then
    SIGKILL whatever is left in their process groups after the grace period."""
    for child in children:
        if child.process is not None and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _group_kill(child)
        child.process.wait()


class StopRequested(Exception):
    """SIGINT or SIGTERM reached the runner."""


def stop_signals_install() -> None:
    def _raise(signum, frame):  # noqa: ARG001 - signal handler signature
        raise StopRequested(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)


def stop_signals_ignore() -> None:
    # While stopping, a second Ctrl-C must not abandon the children half-stopped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def children_supervise(
    *,
    children: list[Child],
    env: dict[str, str],
    log: Callable[[str], None],
    backoff: Backoff = Backoff(),
    poll_seconds: float = 0.5,
) -> None:
    """Restart children that exit, with backoff, until StopRequested propagates from the signal
    handler; raise ChildKeepsDying when one keeps dying quickly."""
    while True:
        now = time.monotonic()
        for child in children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child_start(child=child, env=env)
                    log(f"Started the {child.name} again (pid {child.process.pid}).")
                continue
            code = child.process.poll()
            if code is None:
                continue
            _group_kill(child)
            uptime = now - child.started_at
            child.quick_deaths = 0 if uptime >= backoff.stable_seconds else child.quick_deaths + 1
            if child.quick_deaths > backoff.max_quick_deaths:
                raise ChildKeepsDying(child)
            delay = backoff.delay(child.quick_deaths)
            child.restart_at = now + delay
            log(f"The {child.name} exited with code {code} after {uptime:.0f} s; starting it again in {delay:g} s.")
        time.sleep(poll_seconds)
