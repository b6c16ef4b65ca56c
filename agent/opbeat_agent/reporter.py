"""The transactions reporter: a daemon thread that takes finished transactions from a bounded
queue (``put_nowait`` from the app's thread; full means dropped and counted), aggregates them, and
every ``transactions_interval`` seconds hands one transactions body to the transport, which sends
it like an error (gzip, retries, backoff, Retry-After).

Restarted after ``fork`` with an empty state; at exit, what was recorded is aggregated and handed
over before the transport's own bounded flush. Never raises into the host app.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from typing import Any, Optional

from .aggregation import TransactionsAggregator
from .version import __version__

logger = logging.getLogger("opbeat_agent.reporter")

_STOP = object()


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
        self._queue: queue.Queue = queue.Queue(maxsize=config.transaction_queue_size)
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
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="opbeat_agent.reporter", daemon=True)
                self._thread.start()

    # --- the host app's side --------------------------------------------------------------------

    def record(self, transaction: Any) -> None:
        if self._closed:
            return
        try:
            self._ensure_worker()
            if transaction.spans and self._queue.qsize() * 2 > self._queue.maxsize:
                # Falling behind: keep the timing (the histograms), shed the detail. Spans are what
                # makes a queued transaction heavy (up to transaction_max_spans each).
                transaction.spans_dropped += len(transaction.spans)
                transaction.spans = []
            self._queue.put_nowait(transaction)
        except (queue.Full, RuntimeError):
            with self._lock:
                self._dropped += 1

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Aggregate everything recorded so far and hand it to the transport (not waiting for the
        transport to send it)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        request = _FlushRequest()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._queue.put(request, timeout=timeout)
        except queue.Full:
            return False
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return request.done.wait(remaining)

    def close(self, timeout: Optional[float] = None) -> None:
        self.flush(timeout)
        self._closed = True
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass

    def _at_exit(self) -> None:
        if not self._closed:
            self.flush(self.config.shutdown_timeout)

    # --- the reporter thread --------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.config.transactions_interval
        next_send = time.monotonic() + interval
        while not self._closed:
            try:
                try:
                    item = self._queue.get(timeout=max(0.0, next_send - time.monotonic()))
                except queue.Empty:
                    item = None
                if item is _STOP:
                    self._send()
                    return
                if isinstance(item, _FlushRequest):
                    self._send()
                    item.done.set()
                    continue
                if item is not None:
                    self._aggregator.add(item)
                if time.monotonic() >= next_send:
                    self._send()
                    next_send = time.monotonic() + interval
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
