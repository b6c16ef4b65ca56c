"""The transactions reporter: a daemon thread that takes finished transactions from a bounded
hand-off (appended from the app's thread without a lock or a wake-up; full means dropped and
counted), aggregates them, and every ``transactions_interval`` seconds hands one transactions body
to the transport, which sends it like an error (gzip, retries, backoff, Retry-After).

The hand-off is a ``collections.deque`` drained every ``_DRAIN_SECONDS``, not a ``queue.Queue``:
a Queue's lock and condition, and waking the reporter for every request, cost the app more CPU
than recording the transaction itself (measured with bench/agent_overhead). A deque's append and
popleft are atomic under the GIL, so the app's thread never waits for ours.

Restarted after ``fork`` with an empty state; at exit, what was recorded is aggregated and handed
over before the transport's own bounded flush. Never raises into the host app.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref
from typing import Any, Optional

from .aggregation import TransactionsAggregator
from .version import __version__

logger = logging.getLogger("opbeat_agent.reporter")

# How often the reporter wakes to fold what the app recorded into its aggregates. Even at ~5,000
# requests/s in one process (more than one process of the benchmark's apps serves on this machine),
# 0.2 s leaves about 1,000 transactions waiting: a tenth of the default transaction_queue_size.
_DRAIN_SECONDS = 0.2


class _FlushRequest:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class TransactionsReporter:
    def __init__(self, config: Any, transport: Any) -> None:
        self.config = config
        self.transport = transport
        self._init_state()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (r := ref()) is not None and r._init_state())
        atexit.register(lambda: (r := ref()) is not None and r._at_exit())

    def _init_state(self) -> None:
        config = self.config
        self._pending: collections.deque = collections.deque()
        self._capacity = config.transaction_queue_size
        self._flushes: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._dropped = 0
        self._aggregator = TransactionsAggregator(
            relative_accuracy=config.sketch_relative_accuracy,
            traces_per_group=config.traces_per_group,
            max_groups=config.transaction_max_groups,
        )

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="opbeat_agent.reporter", daemon=True)
                self._thread.start()

    def _drop(self) -> None:
        # The rare path: a lock here keeps the count exact without costing the common one.
        with self._lock:
            self._dropped += 1

    # --- the host app's side --------------------------------------------------------------------

    def record(self, transaction: Any) -> None:
        if self._closed:
            return
        try:
            if self._thread is None:
                self._ensure_worker()
            pending = self._pending
            waiting = len(pending)
            if waiting >= self._capacity:
                # Checked without a lock: two threads may both take the last place, which only
                # lets the hand-off run over its bound by a transaction or two.
                self._drop()
                return
            if transaction.spans and waiting * 2 > self._capacity:
                # Falling behind: keep the timing (the histograms), shed the detail. Spans are what
                # makes a waiting transaction heavy (up to transaction_max_spans each).
                transaction.spans_dropped += len(transaction.spans)
                transaction.spans = []
            pending.append(transaction)
        except RuntimeError:  # "can't start new thread": the interpreter is shutting down
            self._drop()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Aggregate everything recorded so far and hand it to the transport (not waiting for the
        transport to send it)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        request = _FlushRequest()
        self._flushes.append(request)
        self._wake.set()
        return request.done.wait(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        self.flush(timeout)
        self._closed = True
        self._wake.set()

    def _at_exit(self) -> None:
        if not self._closed:
            self.flush(self.config.shutdown_timeout)

    # --- the reporter thread --------------------------------------------------------------------

    def _drain(self) -> None:
        pending, add = self._pending, self._aggregator.add
        while True:
            try:
                transaction = pending.popleft()
            except IndexError:
                return
            try:
                add(transaction)
            except Exception:  # noqa: BLE001 - one odd transaction must not cost the others
                logger.exception("opbeat_agent: could not aggregate a transaction")

    def _run(self) -> None:
        interval = self.config.transactions_interval
        next_send = time.monotonic() + interval
        while True:
            try:
                self._wake.wait(min(_DRAIN_SECONDS, max(0.0, next_send - time.monotonic())))
                self._wake.clear()
                # Only the flushes asked for before this drain are answered by this send: one that
                # arrives while we send waits for the next round, which then has its data.
                flushes = len(self._flushes)
                closing = self._closed
                self._drain()
                if flushes or closing or time.monotonic() >= next_send:
                    self._send()
                    next_send = time.monotonic() + interval
                for _ in range(flushes):
                    self._flushes.popleft().done.set()
                if closing:
                    return
            except Exception:  # noqa: BLE001 - the reporter must outlive any bug in one transaction
                logger.exception("opbeat_agent: reporter error")

    def _send(self) -> None:
        parts = self._aggregator.drain()
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if parts is None and not dropped:
            return
        parts = parts or {"histograms": [], "traces": [], "dropped_groups": 0}
        config = self.config
        body = {
            "organization_id": config.organization_id,
            "app_id": config.app_id,
            "machine": {"hostname": config.hostname},
            "agent": {"name": "opbeat-agent", "version": __version__},
            "histograms": parts["histograms"],
            "traces": parts["traces"],
            "dropped": {"transactions": dropped + parts["dropped_groups"]},
        }
        if config.release:
            body["release"] = config.release
        if config.environment:
            body["environment"] = config.environment
        self.transport.send_transactions(body)
