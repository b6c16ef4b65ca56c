"""Counts of refused events, by app, reason and hour, kept in process memory and shipped to the
worker (``processing.tasks.rejections_record``) through the queue every ~10 seconds and at exit,
each with the latest refusal's status and message (the example the dashboard shows, so the owner
of an agent sees which field the intake refused).

Each refusal is also logged, once per app and reason per minute: a flood of refused requests
writes one line a minute, saying how many were not logged since the previous one.

Counting happens on the request path, so it is a few dict operations under a lock; a daemon thread
started on first use (and again after a fork: gunicorn ``--preload`` children do not inherit
threads) does the publishing. If the broker is down, the counts are kept and merged into the
next flush. This module never touches the database.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
import time

from . import queue

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 10.0
LOG_SECONDS = 60
# The example message shipped per (app, reason, hour): the intake's refusal messages are short
# (a msgspec error names the field and the types), a longer one is cut.
EXAMPLE_MAX = 300
# Past this many distinct (app, reason, hour) rows held while the broker is down, the oldest
# counts are dropped rather than growing without bound.
MAX_PENDING_ROWS = 50_000

_lock = threading.Lock()
# (app, reason, hour) -> [count, the latest refusal's status, its message (capped when shipped,
# not on the request path)].
_counts: dict[tuple[int, str, int], list] = {}
# (app or None, reason) -> [the minute last logged, refusals not logged since]. Bounded by the
# apps this process answers times a handful of reasons; cleared past LOGGED_MAX all the same.
_logged: dict[tuple[int | None, str], list[int]] = {}
LOGGED_MAX = 100_000
# time.time, replaceable by tests that need a refusal to fall in a given minute.
_clock = time.time
_thread_pid: int | None = None
_wake = threading.Event()


def rejection_count(*, app_pk: int | None, reason: str, status: int = 0, message: str = "") -> None:
    """Count a refusal against its app (not counted when the app is unknown) and log it, unless
    this app and reason were logged already this minute."""
    now = int(_clock())
    minute = now // LOG_SECONDS
    with _lock:
        if app_pk is not None:
            key = (app_pk, reason, now // 3600 * 3600)
            held = _counts.get(key)
            _counts[key] = [(held[0] if held else 0) + 1, status, message]
        seen = _logged.get((app_pk, reason))
        if seen is not None and seen[0] == minute:
            seen[1] += 1
            unlogged = -1
        else:
            if len(_logged) >= LOGGED_MAX:
                _logged.clear()
            unlogged = seen[1] if seen is not None else 0
            _logged[(app_pk, reason)] = [minute, 0]
    if unlogged >= 0:
        # %r keeps a message quoting the client's field names on one line of the log.
        logger.warning(
            "intake: refused a request of app %s: %s (%d) %r; %d more of this app and reason not logged since the previous line",
            app_pk if app_pk is not None else "unknown", reason, status, message[:EXAMPLE_MAX], unlogged,
        )  # fmt: skip
    if app_pk is not None and _thread_pid != os.getpid():
        _flusher_start()


def _rows(counts: dict) -> list[dict]:
    return [
        {"app_id": app_pk, "reason": reason, "hour": hour, "count": count, "status": status, "example": message[:EXAMPLE_MAX]}
        for (app_pk, reason, hour), (count, status, message) in counts.items()
    ]


def rejections_pending() -> list[dict]:
    """The counts not yet shipped, as the rows ``rejections_enqueue`` takes."""
    with _lock:
        return _rows(_counts)


def rejections_pending_clear() -> None:
    """Forget the counts not yet shipped and the minutes logged (tests start from zero)."""
    with _lock:
        _counts.clear()
        _logged.clear()


def rejections_flush() -> int:
    """Ship the counts held so far; return how many rows were sent (0 if none or the broker
    is unreachable, in which case they are kept for the next flush)."""
    global _counts
    with _lock:
        taken, _counts = _counts, {}
    if not taken:
        return 0
    rows = _rows(taken)
    try:
        queue.rejections_enqueue(rows)
    except queue.QueueUnavailable as exc:
        logger.warning("intake: could not ship %d rejection counts, keeping them: %s", len(rows), exc)
        with _lock:
            for key, (count, status, message) in taken.items():
                held = _counts.get(key)
                # A refusal counted since the failed flush holds the newer example.
                _counts[key] = [count + held[0], held[1], held[2]] if held else [count, status, message]
            while len(_counts) > MAX_PENDING_ROWS:
                del _counts[next(iter(_counts))]
        return 0
    return len(rows)


def _run() -> None:
    while True:
        _wake.wait(FLUSH_SECONDS)
        _wake.clear()
        try:
            rejections_flush()
        except Exception:  # noqa: BLE001 - the flusher must outlive any one bad flush
            logger.exception("intake: rejection flush failed")


def _flusher_start() -> None:
    global _thread_pid
    with _lock:
        if _thread_pid == os.getpid():
            return
        _thread_pid = os.getpid()
    threading.Thread(target=_run, name="opbeat-intake-rejections", daemon=True).start()


def _after_fork() -> None:
    # The child inherits the parent's unsent counts (the parent ships them) and a lock that may
    # be held by a thread that did not come along: start clean.
    global _lock, _counts, _logged, _thread_pid
    _lock = threading.Lock()
    _counts = {}
    _logged = {}
    _thread_pid = None


def _at_exit() -> None:
    try:
        rejections_flush()
    except Exception:  # noqa: BLE001 - at interpreter exit, logging the loss is all we can do
        logger.exception("intake: final rejection flush failed")


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_at_exit)
# Workers started by multiprocessing (granian's) leave through os._exit, which skips atexit but
# runs multiprocessing's own finalizers first.
multiprocessing.util.Finalize(None, _at_exit, exitpriority=10)
