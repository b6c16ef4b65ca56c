"""Waiting out a database outage without losing or acknowledging anything.

The worker's tasks wrap their service call in ``database_patiently``: while PostgreSQL (or a
locked SQLite file) does not answer, the call is repeated with a growing pause, on a fresh
connection each time. The queue messages stay unacknowledged meanwhile, so a worker stopped
during the outage hands them back to the broker instead of dropping them.

This module never swallows any other error. Calls must be atomic (nothing committed when they
raise) and should be idempotent: event digests are; a rejection counter could count one batch twice
in the rare case where the connection breaks during COMMIT, which we accept for a counter.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from celery.worker import state as worker_state
from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_PAUSE = 0.5
LONGEST_PAUSE = 30.0


def connection_discard() -> None:
    """Close the current connection so the next query opens a new one (the old one may be dead)."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection can fail in many ways; it is dropped either way
        connection.connection = None


def database_patiently(call: Callable[[], T], *, what: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """Return ``call()``, repeating it for as long as the database is unreachable.

    ``call`` must be atomic (nothing committed when it raises). A warm shutdown of
    the worker (``celery.worker.state``) ends the wait by raising ``WorkerShutdown``, which the
    batch machinery does not catch, so the messages are not acknowledged and go back to the queue
    (``tests/processing/test_worker.py`` stops a worker this way). celery_batches 0.11 then logs
    "Error in timer: UnboundLocalError ... 'result'" from its postrun hook, which assumes the task
    either returned or raised an ``Exception``; harmless, the worker is stopping anyway.
    """
    pause = FIRST_PAUSE
    attempt = 0
    while True:
        try:
            return call()
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block:
                # Inside the caller's transaction a new connection cannot continue it: only the
                # caller can start over, so it gets the error.
                raise
            attempt += 1
            logger.warning("%s: database unavailable (attempt %d), retrying in %.1fs: %s", what, attempt, pause, exc)
            connection_discard()
            worker_state.maybe_shutdown()
            sleep(pause)
            worker_state.maybe_shutdown()
            pause = min(pause * 2, LONGEST_PAUSE)
