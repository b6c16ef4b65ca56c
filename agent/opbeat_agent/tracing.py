"""Recording transactions and spans in the host app's thread: as little as possible.

A transaction is a unit of work (a request, a task); spans are timed pieces of it (a query, a
template, an outgoing request, ``opbeat_agent.trace``). Recording one is a ``perf_counter`` call,
a small object and a ContextVar set; everything else (aggregating, sampling, encoding, sending)
happens in the reporter's thread once the transaction ends. State lives in ``contextvars``, so
threads, asyncio tasks and greenlets each have their own current transaction and span.

This module never raises into the host app and never blocks.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
import time
from typing import Any, Callable, Optional

from .sql import sql_describe

_transaction: contextvars.ContextVar[Optional["Transaction"]] = contextvars.ContextVar(
    "opbeat_agent_transaction", default=None
)
_span: contextvars.ContextVar[Optional["Span"]] = contextvars.ContextVar("opbeat_agent_span", default=None)

_SKIP_STACK_MODULES = ("opbeat_agent", "contextlib", "wrapt")


class Span:
    __slots__ = ("id", "parent", "signature", "kind", "start", "duration", "extra", "stack")

    def __init__(self, id: int, parent: int, signature: str, kind: str, start: float, extra: Optional[dict]) -> None:
        self.id = id
        self.parent = parent  # 0: the transaction itself
        self.signature = signature
        self.kind = kind
        self.start = start  # perf_counter seconds
        self.duration: Optional[float] = None  # milliseconds, once ended
        self.extra = extra
        self.stack: Optional[list] = None

    def to_dict(self, transaction_start: float) -> dict:
        out = {
            "id": self.id,
            "parent": self.parent,
            "signature": self.signature,
            "kind": self.kind,
            "start": round((self.start - transaction_start) * 1000.0, 3),
            "duration": round(self.duration if self.duration is not None else 0.0, 3),
        }
        if self.extra:
            out["extra"] = self.extra
        if self.stack:
            out["stack"] = self.stack
        return out


class Transaction:
    __slots__ = (
        "kind", "name", "result", "start", "timestamp", "duration", "spans", "spans_dropped",
        "_next_id", "max_spans", "stack_min_ms", "stack_max_frames",
    )  # fmt: skip

    def __init__(self, kind: str, *, max_spans: int, stack_min_ms: float, stack_max_frames: int) -> None:
        self.kind = kind
        self.name: Optional[str] = None
        self.result: Any = None
        self.start = time.perf_counter()
        self.timestamp = time.time()  # wall clock, for the minute it belongs to
        self.duration: Optional[float] = None  # milliseconds
        self.spans: list = []
        self.spans_dropped = 0
        self._next_id = 1
        self.max_spans = max_spans
        self.stack_min_ms = stack_min_ms
        self.stack_max_frames = stack_max_frames

    def span_begin(self, signature: str, kind: str, extra: Optional[dict]) -> Optional[Span]:
        if len(self.spans) >= self.max_spans:
            self.spans_dropped += 1
            return None
        parent = _span.get()
        span = Span(self._next_id, parent.id if parent is not None else 0, signature, kind, time.perf_counter(), extra)
        self._next_id += 1
        self.spans.append(span)
        return span

    def span_end(self, span: Span) -> None:
        span.duration = (time.perf_counter() - span.start) * 1000.0
        if span.duration >= self.stack_min_ms:
            span.stack = _short_stack(self.stack_max_frames)

    def end(self) -> None:
        self.duration = (time.perf_counter() - self.start) * 1000.0


def _short_stack(max_frames: int) -> list:
    """Where a slow span was started from: newest first as collected, sent oldest first, without
    context lines or locals (a few frames of module, function, line are enough to find it)."""
    frames = []
    frame = sys._getframe(2)
    while frame is not None and len(frames) < max_frames:
        module = frame.f_globals.get("__name__", "") or ""
        if not module.startswith(_SKIP_STACK_MODULES):
            code = frame.f_code
            frames.append({"module": module, "function": code.co_name, "filename": code.co_filename,
                           "lineno": frame.f_lineno})
        frame = frame.f_back
    frames.reverse()
    return frames


def query_call(kind: str, sql: Any, call: Callable, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)`` (a driver's execute) as a query span of kind ``kind``
    (``db.sqlite.sql``), unless no transaction is recording or a query span is already open (the
    ORM's or SQLAlchemy's, one level up).

    Every instrumented query goes through here, so it is written for speed: no ``trace`` object,
    the signature and stripped text looked up per statement (``sql_describe``), two ContextVar
    reads: about 1.2 µs more than the bare query on the benchmark machine, where a proxy, a
    ``trace`` object and the regular expressions on every query cost 13 µs.
    """
    transaction = _transaction.get()
    if transaction is None:
        return call(*args, **kwargs)
    parent = _span.get()
    if parent is not None and parent.kind.startswith("db."):
        return call(*args, **kwargs)
    try:
        signature, extra = sql_describe(sql if isinstance(sql, str) else str(sql))
        span = transaction.span_begin(signature, kind, extra)
    except Exception:  # noqa: BLE001 - recording must never break the query
        span = None
    return _span_run(transaction, span, call, args, kwargs)


def span_call(signature: str, kind: str, call: Callable, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)`` as a span of the current transaction (a straight call outside
    one): what ``trace`` does, without making a ``trace`` object, for instrumentation that runs on
    every request (templates)."""
    transaction = _transaction.get()
    if transaction is None:
        return call(*args, **kwargs)
    try:
        span = transaction.span_begin(signature, kind, None)
    except Exception:  # noqa: BLE001 - recording must never break the call
        span = None
    return _span_run(transaction, span, call, args, kwargs)


def _span_run(transaction: Transaction, span: Optional[Span], call: Callable, args: tuple, kwargs: dict) -> Any:
    if span is None:
        return call(*args, **kwargs)
    token = _span.set(span)
    try:
        return call(*args, **kwargs)
    finally:
        transaction.span_end(span)
        _span.reset(token)


def transaction_current() -> Optional[Transaction]:
    return _transaction.get()


def span_current() -> Optional[Span]:
    return _span.get()


def transaction_name_set(name: str) -> None:
    """Name the current transaction (a worker loop, a WSGI app without routes); an integration
    that knows the route names it itself."""
    transaction = _transaction.get()
    if transaction is not None:
        transaction.name = str(name)


def transaction_start(kind: str, *, max_spans: int, stack_min_ms: float, stack_max_frames: int) -> Transaction:
    transaction = Transaction(kind, max_spans=max_spans, stack_min_ms=stack_min_ms, stack_max_frames=stack_max_frames)
    _transaction.set(transaction)
    _span.set(None)
    return transaction


def transaction_finish() -> Optional[Transaction]:
    """End the current transaction and forget it; returns it for the reporter."""
    transaction = _transaction.get()
    if transaction is None:
        return None
    _transaction.set(None)
    _span.set(None)
    transaction.end()
    return transaction


class trace:
    """A span around a block or a function, in the current transaction (no-op outside one)::

        with opbeat_agent.trace("charge card", kind="payment"):
            ...

        @opbeat_agent.trace("render invoice")
        def render(invoice): ...

    An instance used with ``with`` is single-use; as a decorator each call gets its own span
    (coroutine functions included).
    """

    __slots__ = ("signature", "kind", "extra", "_span", "_token", "_transaction")

    def __init__(self, signature: Optional[str] = None, kind: str = "code.custom", extra: Optional[dict] = None) -> None:
        self.signature = signature
        self.kind = kind
        self.extra = extra
        self._span: Optional[Span] = None
        self._token = None
        self._transaction: Optional[Transaction] = None

    def __enter__(self) -> "trace":
        transaction = _transaction.get()
        if transaction is None:
            return self
        try:
            span = transaction.span_begin(self.signature or "<unnamed>", self.kind, self.extra)
            if span is not None:
                self._span, self._transaction = span, transaction
                self._token = _span.set(span)
        except Exception:  # noqa: BLE001 - recording must never break the traced code
            self._span = None
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._span is None:
            return
        try:
            self._transaction.span_end(self._span)
            _span.reset(self._token)
        except Exception:  # noqa: BLE001 - e.g. exited in another context than it was entered in
            _span.set(None)
        finally:
            self._span = self._transaction = self._token = None

    def __call__(self, func: Callable) -> Callable:
        signature = self.signature or getattr(func, "__qualname__", repr(func))
        kind, extra = self.kind, self.extra
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with trace(signature, kind, extra):
                    return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with trace(signature, kind, extra):
                return func(*args, **kwargs)

        return wrapper
