"""Counts of refused events, by app, reason and hour, kept in process memory and shipped to the
worker (``processing.tasks.rejections_record``) through the queue every ~10 seconds and at exit.

Counting happens on the request path, so it is a dict increment under a lock; a daemon thread
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
# Past this many distinct (app, reason, hour) rows held while the broker is down, the oldest
# counts are dropped rather than growing without bound.
MAX_PENDING_ROWS = 50_000

_lock = threading.Lock()
_counts: dict[tuple[int, str, int], int] = {}
_thread_pid: int | None = None
_wake = threading.Event()


def rejection_count(*, app_pk: int, reason: str) -> None:
    hour = int(time.time()) // 3600 * 3600
    key = (app_pk, reason, hour)
    with _lock:
        _counts[key] = _counts.get(key, 0) + 1
    if _thread_pid != os.getpid():
        _flusher_start()


def rejections_pending() -> list[dict]:
    """The counts not yet shipped, as the rows ``rejections_enqueue`` takes."""
    with _lock:
        return [{"app_id": a, "reason": r, "hour": h, "count": c} for (a, r, h), c in _counts.items()]


def rejections_pending_clear() -> None:
    """Forget the counts not yet shipped (tests start from zero)."""
    with _lock:
        _counts.clear()


def rejections_flush() -> int:
    """Ship the counts held so far; return how many rows were sent (0 if none or the broker
    is unreachable, in which case they are kept for the next flush)."""
    global _counts
    with _lock:
        taken, _counts = _counts, {}
    if not taken:
        return 0
    rows = [{"app_id": a, "reason": r, "hour": h, "count": c} for (a, r, h), c in taken.items()]
    try:
        queue.rejections_enqueue(rows)
    except queue.QueueUnavailable as exc:
        logger.warning("intake: could not ship %d rejection counts, keeping them: %s", len(rows), exc)
        with _lock:
            for key, count in taken.items():
                _counts[key] = _counts.get(key, 0) + count
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
    global _lock, _counts, _thread_pid
    _lock = threading.Lock()
    _counts = {}
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
