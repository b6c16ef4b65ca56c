"""Getting events to the intake without the host app ever waiting for it.

``HTTPTransport.send`` only hands the event to a bounded queue with ``put_nowait`` (a full queue
drops the event and counts it); a daemon thread does everything else: takes what is queued (up
to ``max_batch`` at a time), encodes it as JSON, gzips it and POSTs each event to the errors
endpoint over one keep-alive connection. Failures are retried with exponential backoff and jitter;
``429`` and ``503`` are honoured with their ``Retry-After``; a ``4xx`` that retrying cannot fix
drops the event. After ``os.fork`` the child starts with an empty queue and its own thread (the
parent's queued events stay the parent's to send); at exit, queued events get
``shutdown_timeout`` seconds to leave.

The host app must never see an exception from here: everything in the worker thread is caught
and logged on the ``opbeat_agent`` logger, which our own logging handler ignores.
"""

from __future__ import annotations

import atexit
import collections
import email.utils
import gzip
import http.client
import json
import logging
import os
import queue
import random
import ssl
import threading
import time
import weakref
from typing import Any, Optional
from urllib.parse import urlsplit

from .version import __version__

logger = logging.getLogger("opbeat_agent.transport")

_STOP = object()
# Bodies we read back from the intake are small JSON messages; never read more than this.
_MAX_RESPONSE_BYTES = 64 * 1024


class Transport:
    """What the client needs from a transport. ``send`` must return at once and never raise."""

    def send(self, event: dict) -> None:
        raise TypeError(f"{type(self).__name__} must implement send()")

    def send_transactions(self, body: dict) -> None:
        """One transactions body (see PROTOCOL.md); a transport that only sends errors drops it."""

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until what was sent so far has left (or failed for good); False on timeout."""
        return True

    def close(self, timeout: Optional[float] = None) -> None:
        self.flush(timeout)

    def stats(self) -> dict:
        return {}


class MemoryTransport(Transport):
    """Keeps events in a list: for an app's own tests, and ours. Thread-safe."""

    def __init__(self, config: Any = None) -> None:
        self.events: list = []
        self.transactions: list = []
        self._lock = threading.Lock()

    def send(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)

    def send_transactions(self, body: dict) -> None:
        with self._lock:
            self.transactions.append(body)

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
            self.transactions.clear()

    def stats(self) -> dict:
        return {"sent": len(self.events), "transactions_sent": len(self.transactions)}


class _Pending:
    __slots__ = ("event", "body", "attempts", "endpoint")

    def __init__(self, event: dict, endpoint: str = "errors") -> None:
        self.event = event
        self.body: Optional[bytes] = None
        self.attempts = 0
        self.endpoint = endpoint  # "errors" or "transactions"


def _json_default(value: Any) -> Any:
    # Events are built from JSON-safe values; anything else that slipped in (a Decimal in
    # ``extra``, a datetime in a tag) is sent as its string form rather than failing the event.
    return str(value)


def event_encode(event: dict) -> bytes:
    """The gzip-compressed JSON body of one event."""
    raw = json.dumps(event, default=_json_default, separators=(",", ":"), ensure_ascii=False)
    return gzip.compress(raw.encode("utf-8", "replace"), compresslevel=6)


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class HTTPTransport(Transport):
    def __init__(self, config: Any) -> None:
        self.config = config
        self._servers = list(config.servers)
        self._server_index = 0
        self._headers = {
            "Authorization": f"Bearer {config.secret_token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": f"opbeat-agent/{__version__}",
            "Accept": "application/json",
        }
        self._init_state()
        ref = weakref.ref(self)
        # Registered through weak references, so a transport that is dropped is not kept alive by
        # the interpreter's hook lists.
        os.register_at_fork(after_in_child=lambda: (t := ref()) is not None and t._init_state())
        atexit.register(lambda: (t := ref()) is not None and t._at_exit())

    # --- state shared with the worker ---------------------------------------------------------

    def _init_state(self) -> None:
        """Fresh queue, locks and thread: at construction and in a forked child, where the
        parent's locks may be held by a thread that does not exist there."""
        self._queue: queue.Queue = queue.Queue(maxsize=self.config.max_queue_size)
        self._lock = threading.Lock()
        self._idle = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._outstanding = 0
        self._flushing = 0
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._connection: Optional[http.client.HTTPConnection] = None
        self._retry_at = 0.0
        self._retry_at_is_server_order = False
        self._failures = 0
        self._counts = collections.Counter()
        self._dropped_unreported = 0
        self._warned: set = set()
        self.last_location: Optional[str] = None
        self.last_status: Optional[int] = None

    def _ensure_worker(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="opbeat_agent.transport", daemon=True)
                self._thread.start()

    # --- the host app's side: never blocks ----------------------------------------------------

    def send(self, event: dict) -> None:
        self._enqueue(_Pending(event))

    def send_transactions(self, body: dict) -> None:
        self._enqueue(_Pending(body, "transactions"))

    def _enqueue(self, item: _Pending) -> None:
        if self._closed:
            self._count_drop("closed")
            return
        try:
            self._ensure_worker()
        except RuntimeError:
            # "can't start new thread" (interpreter shutting down, thread limit): drop, count.
            self._count_drop("no_thread")
            return
        with self._idle:
            self._outstanding += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._done(1)
            self._count_drop("queue_full")

    def _count_drop(self, reason: str) -> None:
        with self._lock:
            self._counts["dropped"] += 1
            self._counts[f"dropped_{reason}"] += 1
            self._dropped_unreported += 1

    def _done(self, n: int) -> None:
        with self._idle:
            self._outstanding -= n
            if self._outstanding <= 0:
                self._idle.notify_all()

    def flush(self, timeout: Optional[float] = None) -> bool:
        with self._idle:
            self._flushing += 1
        # Cut short a backoff wait: a flush is worth one more try now (not so a server's own
        # Retry-After, which is honoured even at exit).
        self._wake.set()
        try:
            with self._idle:
                return self._idle.wait_for(lambda: self._outstanding <= 0, timeout)
        finally:
            with self._idle:
                self._flushing -= 1

    def close(self, timeout: Optional[float] = None) -> None:
        self.flush(self.config.shutdown_timeout if timeout is None else timeout)
        self._closed = True
        self._wake.set()
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the worker sees _closed after its current batch
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    def stats(self) -> dict:
        with self._lock:
            counts = dict(self._counts)
        counts.setdefault("sent", 0)
        counts.setdefault("dropped", 0)
        counts["queued"] = max(0, self._outstanding)
        return counts

    def _at_exit(self) -> None:
        if self._closed or self._outstanding <= 0:
            return
        if not self.flush(self.config.shutdown_timeout):
            logger.warning(
                "opbeat_agent: %d event(s) not sent at exit after %.1fs", self._outstanding, self.config.shutdown_timeout
            )

    # --- the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        pending: collections.deque = collections.deque()
        while not self._closed:
            try:
                if not pending:
                    item = self._queue.get()
                    if item is _STOP:
                        break
                    pending.append(item)
                while len(pending) < self.config.max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._closed = True
                        break
                    pending.append(item)
                self._backoff_wait()
                self._send_batch(pending)
            except Exception:  # noqa: BLE001 - the worker must outlive any bug in one event
                logger.exception("opbeat_agent: transport worker error")
                if pending:
                    pending.popleft()
                    self._done(1)
                    with self._lock:
                        self._counts["failed"] += 1
        self._disconnect()

    def _backoff_wait(self) -> None:
        while not self._closed:
            delay = self._retry_at - time.monotonic()
            if delay <= 0:
                return
            if self._flushing and not self._retry_at_is_server_order:
                return
            self._wake.wait(delay)
            self._wake.clear()

    def _send_batch(self, pending: collections.deque) -> None:
        while pending and not self._closed:
            item = pending[0]
            outcome = self._deliver(item)
            if outcome == "retry":
                return
            pending.popleft()
            self._done(1)

    def _deliver(self, item: _Pending) -> str:
        """POST one event. Returns "done" (sent, or dropped for good) or "retry"."""
        if item.body is None:
            try:
                item.body = event_encode(item.event)
            except (TypeError, ValueError, RecursionError) as exc:
                logger.warning("opbeat_agent: dropping an event that cannot be encoded: %s", exc)
                self._count_drop("unencodable")
                return "done"
            item.event = None  # the encoded body is all we need from now on
        item.attempts += 1
        try:
            status, headers, text = self._post(item.body, item.endpoint)
        except (OSError, http.client.HTTPException) as exc:
            self._disconnect()
            self._server_index = (self._server_index + 1) % len(self._servers)
            self._schedule_backoff(server_order=None)
            with self._lock:
                self._counts["connection_errors"] += 1
            logger.info("opbeat_agent: intake unreachable (%s); will retry", exc)
            return "retry"
        if item.endpoint == "errors":
            self.last_status = status
        if 200 <= status < 300:
            self._failures = 0
            self._retry_at = 0.0
            if item.endpoint == "errors":
                self.last_location = headers.get("location")
            with self._lock:
                self._counts["sent" if item.endpoint == "errors" else "transactions_sent"] += 1
            logger.debug("opbeat_agent: logged %s at %s", item.endpoint, self.last_location)
            return "done"
        if status in (429, 503):
            key = "rate_limited" if status == 429 else "unavailable"
            with self._lock:
                self._counts[key] += 1
            self._schedule_backoff(server_order=retry_after_seconds(headers.get("retry-after")))
            logger.info("opbeat_agent: intake answered %d; retrying later", status)
            return "retry"
        if status >= 500 and item.attempts < self.config.max_attempts_on_server_error:
            with self._lock:
                self._counts["server_errors"] += 1
            self._schedule_backoff(server_order=None)
            return "retry"
        # A 4xx (bad token, unknown app, too large, invalid) or a 5xx that keeps coming for this
        # event: retrying cannot help, and keeping it would block every event behind it.
        with self._lock:
            self._counts["rejected"] += 1
            self._counts[f"rejected_{status}"] += 1
            first = (item.endpoint, status) not in self._warned
            self._warned.add((item.endpoint, status))
        # Once per endpoint and status at WARNING: a server without the transactions endpoint
        # would otherwise fill the app's log every few seconds.
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "opbeat_agent: intake rejected %s with %d: %s",
            "an event" if item.endpoint == "errors" else "a transactions body",
            status,
            text[:300],
        )
        return "done"

    def _schedule_backoff(self, *, server_order: Optional[float]) -> None:
        if server_order is not None:
            self._retry_at = time.monotonic() + server_order
            self._retry_at_is_server_order = True
            return
        self._failures += 1
        base = min(self.config.retry_backoff_max, self.config.retry_backoff_base * 2 ** min(self._failures - 1, 30))
        # "Equal jitter": at least half the step, so a fleet of agents restarted together spreads out
        # without any of them hammering a recovering intake.
        self._retry_at = time.monotonic() + base * random.uniform(0.5, 1.0)
        self._retry_at_is_server_order = False

    def _server(self) -> str:
        return self._servers[self._server_index % len(self._servers)]

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            parts = urlsplit(self._server())
            if parts.scheme == "https":
                self._connection = http.client.HTTPSConnection(
                    parts.hostname, parts.port, timeout=self.config.timeout, context=ssl.create_default_context()
                )
            else:
                self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.config.timeout)
        return self._connection

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is gone either way
                pass

    def _post(self, body: bytes, endpoint: str = "errors") -> tuple:
        headers = dict(self._headers)
        if self._dropped_unreported:
            reported = self._dropped_unreported
            headers["X-Opbeat-Agent-Dropped"] = str(reported)
        else:
            reported = 0
        path = urlsplit(self.config.endpoint_url(self._server(), endpoint)).path
        for attempt in (1, 2):
            connection = self._connect()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed while we were idle: one fresh try.
                self._disconnect()
                if attempt == 2:
                    raise
        data = response.read(_MAX_RESPONSE_BYTES)
        if not response.isclosed():
            self._disconnect()
        if response.getheader("connection", "").lower() == "close":
            self._disconnect()
        if 200 <= response.status < 300 and reported:
            with self._lock:
                self._dropped_unreported -= reported
        response_headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, response_headers, data.decode("utf-8", "replace")
