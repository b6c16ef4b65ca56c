"""The embedded runner's supervisor: a child that exits is started again with backoff while the
others keep running, and one that keeps dying quickly ends the supervision.

Real processes, short ones: ``python -c`` children that exit at once or sleep. The backoff is
scaled down to hundredths of a second; its doubling is read from the runner's log lines.
"""

from __future__ import annotations

import re
import signal
import sys

import pytest

from opbeat_server.management import supervisor

FAST = supervisor.Backoff(first_seconds=0.01, max_seconds=0.04, stable_seconds=60.0, max_quick_deaths=5)


def _child(name: str, code: str) -> supervisor.Child:
    return supervisor.Child(name, [sys.executable, "-c", code])


def test_a_child_that_keeps_dying_is_restarted_with_doubling_delays_then_given_up_on():
    dying = _child("worker", "import sys; sys.exit(3)")
    steady = _child("web", "import time; time.sleep(60)")
    children = [dying, steady]
    lines: list[str] = []
    supervisor.children_start(children=children, env={})
    steady_pid = steady.process.pid
    try:
        with pytest.raises(supervisor.ChildKeepsDying) as raised:
            supervisor.children_supervise(children=children, env={}, log=lines.append, backoff=FAST, poll_seconds=0.005)
        assert raised.value.child is dying
        # The other child was never touched: the same process, still running.
        assert steady.process.pid == steady_pid
        assert steady.process.poll() is None
    finally:
        supervisor.children_stop(children=children, grace_seconds=5)

    exits = [line for line in lines if line.startswith("The worker exited with code 3")]
    delays = [float(re.search(r"again in ([0-9.]+) s", line).group(1)) for line in exits]
    assert delays == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert len([line for line in lines if line.startswith("Started the worker again (pid ")]) == 5
    assert not [line for line in lines if "web" in line]


def test_a_child_that_ran_long_enough_starts_again_after_the_first_delay():
    child = _child("worker", "import sys; sys.exit(0)")
    lines: list[str] = []
    backoff = supervisor.Backoff(first_seconds=0.01, max_seconds=0.04, stable_seconds=0.0, max_quick_deaths=0)

    def log(line: str) -> None:
        lines.append(line)
        if len(lines) >= 8:
            raise supervisor.StopRequested("enough")

    supervisor.children_start(children=[child], env={})
    try:
        with pytest.raises(supervisor.StopRequested):
            supervisor.children_supervise(children=[child], env={}, log=log, backoff=backoff, poll_seconds=0.005)
    finally:
        supervisor.children_stop(children=[child], grace_seconds=5)
    # Every death counts as after a stable run: never a longer wait, never a give-up.
    assert [line.split("again in ")[1] for line in lines if "again in" in line] == ["0.01 s."] * 4


def test_a_killed_child_is_restarted_as_a_new_process_and_the_stop_signal_still_stops_all():
    worker = _child("worker", "import time; time.sleep(60)")
    web = _child("web", "import time; time.sleep(60)")
    children = [worker, web]
    lines: list[str] = []
    first_pid = None

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("Started the worker again"):
            raise supervisor.StopRequested("SIGTERM")

    supervisor.children_start(children=children, env={})
    first_pid, web_pid = worker.process.pid, web.process.pid
    worker.process.send_signal(signal.SIGKILL)
    try:
        with pytest.raises(supervisor.StopRequested):
            supervisor.children_supervise(children=children, env={}, log=log, backoff=FAST, poll_seconds=0.005)
        assert worker.process.pid != first_pid and worker.process.poll() is None
        assert web.process.pid == web_pid and web.process.poll() is None
    finally:
        supervisor.children_stop(children=children, grace_seconds=5)
    assert worker.process.poll() is not None and web.process.poll() is not None
    assert lines[0].startswith(f"The worker exited with code {-signal.SIGKILL} after 0 s; starting it again in 0.01 s")
