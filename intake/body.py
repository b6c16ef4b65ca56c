"""The request body as the intake reads it: streamed under a size cap (413) and a time limit (408),
with a Content-Length or chunked.

Django's ``request.read()`` sees only ``CONTENT_LENGTH`` bytes, so a chunked body (no
Content-Length) would read as empty. This reads ``wsgi.input`` itself: up to the Content-Length
when there is one, else to the end of the stream when the server says the stream ends with the
body (``wsgi.input_terminated``: granian and gunicorn both set it and de-chunk the body).

The time limit: a client that sends its body a few bytes a second must not hold a server thread.
Neither server bounds the body's arrival (granian bounds only the headers; gunicorn's ``--timeout``
does not apply to a gthread request), so the reader checks the deadline between reads, and keeps
each read no larger than what has arrived so far: a ``read(n)`` blocks until n bytes (or the end)
arrive, in granian's Rust code as in gunicorn's. Under gunicorn a watchdog also shuts down the
socket's reading side at the deadline, which ends even a read waiting on a client that sends
nothing at all, and makes gunicorn close the connection after the 408. Granian gives the
application no way to end a read in progress (reading on another thread is no way out: the worker
stops running Python when a request returns while its body is being read elsewhere), so under
granian a client that keeps sending slowly is answered 408 within about twice the limit, but one
that stops sending entirely (or sends fast, then stalls) holds its request thread until it goes
away; a reverse proxy's body timeout (nginx ``client_body_timeout``) closes that gap.

This module never touches the database.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable

from .errors import BodyTimeout, IntakeError, LengthRequired
from .protocols import opbeat


class _Watchdog:
    """One daemon thread per process that calls a callback at its deadline unless cancelled first
    (a thread per request would cost more than the request)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, list]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        threading.Thread(target=self._run, name="intake-body-watchdog", daemon=True).start()

    def arm(self, deadline: float, callback: Callable[[], None]) -> list:
        entry = [callback]
        with self._wake:
            heapq.heappush(self._heap, (deadline, next(self._order), entry))
            # Deadlines mostly arrive in order: wake the thread only for a new earliest one.
            if self._heap[0][2] is entry:
                self._wake.notify()
        return entry

    @staticmethod
    def cancel(entry: list) -> None:
        # Left in the heap (removing costs more); dropped when its deadline passes.
        entry[0] = None

    def _run(self) -> None:
        while True:
            due = []
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._wake.wait(self._heap[0][0] - now)
                    continue
            for entry in due:
                callback = entry[0]
                if callback is not None:
                    callback()


_watchdog: _Watchdog | None = None
_watchdog_pid: int | None = None
_watchdog_lock = threading.Lock()


def _watchdog_get() -> _Watchdog:
    # One per process: a watchdog inherited through fork (gunicorn --preload) has no thread.
    global _watchdog, _watchdog_pid
    if _watchdog_pid != os.getpid():
        with _watchdog_lock:
            if _watchdog_pid != os.getpid():
                _watchdog, _watchdog_pid = _Watchdog(), os.getpid()
    return _watchdog


class _DeadlineStream:
    """``wsgi.input`` read in pieces no larger than what has arrived so far, refusing (408) once
    the deadline has passed. A read blocks until its size has arrived, so asking for at most as
    much as was already received makes a read last about as long as the body took so far: a
    client sending at a steady slow pace is cut off within about twice the limit, and a fast body
    needs only a doubling series of reads (twenty for a megabyte)."""

    def __init__(self, stream, *, deadline: float, seconds: float, small_reads: bool) -> None:
        self.stream = stream
        self.deadline = deadline
        self.seconds = seconds
        self.small_reads = small_reads
        self.received = 0

    def _timeout(self) -> BodyTimeout:
        return BodyTimeout(f"the body was not complete within {self.seconds:g} seconds")

    def read(self, size: int) -> bytes:
        if time.monotonic() >= self.deadline:
            raise self._timeout()
        try:
            chunk = self.stream.read(min(size, max(1, self.received)) if self.small_reads else size)
        except Exception:
            # The watchdog ended the read (gunicorn's reader then raises): report why.
            if time.monotonic() >= self.deadline:
                raise self._timeout() from None
            raise
        if time.monotonic() >= self.deadline:
            raise self._timeout()
        self.received += len(chunk)
        return chunk


def _content_length(environ: dict) -> int | None:
    raw = (environ.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise IntakeError(f"Content-Length {raw[:40]!r} is not a number of bytes")
    return int(raw)


def _reading_stop(sock: socket.socket) -> None:
    try:
        # Ends a read waiting on the client (recv returns at once) and leaves the body
        # undrainable, so gunicorn closes the connection after the 408; the write side stays open.
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


def request_body_read(environ: dict, *, max_bytes: int, seconds: float) -> bytes:
    """The body of the request ``environ`` describes, read within ``seconds`` (408 past them) and
    capped at ``max_bytes`` while streaming (413 past it)."""
    content_length = _content_length(environ)
    if content_length is None and not environ.get("wsgi.input_terminated"):
        # This server cannot say where a body without Content-Length ends.
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            raise LengthRequired("send a Content-Length: this server cannot read a chunked body")
        return b""
    if content_length == 0:
        return b""
    deadline = time.monotonic() + seconds
    sock = environ.get("gunicorn.socket")
    # With the socket, the watchdog ends any read at the deadline: full-size reads are safe.
    stream = _DeadlineStream(environ["wsgi.input"], deadline=deadline, seconds=seconds, small_reads=sock is None)
    entry = _watchdog_get().arm(deadline, lambda: _reading_stop(sock)) if sock is not None else None
    try:
        return opbeat.body_read(stream=stream, content_length=content_length, max_bytes=max_bytes)
    finally:
        if entry is not None:
            _Watchdog.cancel(entry)
