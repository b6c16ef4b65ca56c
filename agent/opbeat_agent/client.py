"""The client: turns an exception or a message into an Intake API v1 errors body, scrubs it, and
hands it to the transport.

An event is built in the calling thread, because the frames and their locals only exist there;
everything after (encoding, compressing, sending, retrying) happens in the transport's thread.
Every public method here catches its own failures: a bug in the agent, a ``__repr__`` that
raises, a transport that cannot start, all end in a log line on the ``opbeat_agent`` logger and a
``None`` return, never in an exception in the host app.
"""

from __future__ import annotations

import contextvars
import datetime
import importlib
import logging
import sys
import time
import uuid
from typing import Any, Mapping, Optional

from .config import Config, config_build
from .context import scope_current
from .scrub import Scrubber, event_scrub
from .stacks import culprit_from_frames, current_stack_frames, traceback_frames
from .reporter import TransactionsReporter
from .tracing import Transaction, transaction_finish, transaction_start
from .transport import HTTPTransport, Transport

logger = logging.getLogger("opbeat_agent")

# Longest message or exception value we send; the intake caps the whole event anyway, this keeps
# one enormous str(exc) from crowding out the stack trace.
_MAX_MESSAGE_CHARS = 8192
_CAPTURED_MARK = "__opbeat_agent_captured__"

# True while this context is building an event: a capture triggered from inside (a logging call
# in a __repr__, a signal handler) is ignored instead of recursing.
_capturing: contextvars.ContextVar[bool] = contextvars.ContextVar("opbeat_agent_capturing", default=False)


def _utc_timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any) -> str:
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a user __str__ may raise anything
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


def _transport_build(config: Config) -> Optional[Transport]:
    spec = config.transport
    if isinstance(spec, Transport):
        return spec
    if isinstance(spec, str) and spec:
        module_name, _, attr = spec.rpartition(".")
        spec = getattr(importlib.import_module(module_name), attr)
    if isinstance(spec, type):
        return spec(config)
    if callable(spec):
        return spec(config)
    return HTTPTransport(config) if config.sendable else None


class Client:
    """``Client(organization_id=..., app_id=..., secret_token=..., servers=[...])``; any option
    not given comes from ``OPBEAT_*`` environment variables (see ``opbeat_agent.config``)."""

    def __init__(self, config: Optional[Config] = None, **options: Any) -> None:
        self.config = config if config is not None else config_build(kwargs=options)
        self.transport: Optional[Transport] = None
        self.reporter: Optional[TransactionsReporter] = None
        if self.config.enabled and self.config.errors:
            logger.warning("opbeat_agent is disabled: %s", "; ".join(self.config.errors))
        if self.config.sendable:
            try:
                self.transport = _transport_build(self.config)
            except Exception:  # noqa: BLE001 - a bad TRANSPORT setting must not break the app's start-up
                logger.exception("opbeat_agent is disabled: the transport could not be built")
            if self.transport is not None and self.config.transactions_enabled:
                self.reporter = TransactionsReporter(self.config, self.transport)
                if self.config.instrument:
                    self._instrument()
        self.scrubber = Scrubber(
            keys=self.config.scrub_keys,
            card_numbers=self.config.scrub_card_numbers,
            enabled=self.config.scrub_data,
        )

    def _instrument(self) -> None:
        try:
            from .instrumentation import instrument_all

            instrument_all(skip=tuple(self.config.disabled_instrumentations))
        except Exception:  # noqa: BLE001 - no wrapt, or a library we could not wrap: run uninstrumented
            logger.warning("opbeat_agent: auto-instrumentation is off", exc_info=True)

    @property
    def active(self) -> bool:
        return self.transport is not None

    # --- public API -------------------------------------------------------------------------------

    def capture_exception(
        self,
        exc_info: Any = None,
        *,
        level: str = "error",
        logger_name: Optional[str] = None,
        extra: Optional[Mapping[str, Any]] = None,
        tags: Optional[Mapping[str, Any]] = None,
        fingerprint: Optional[list] = None,
        data: Optional[Mapping[str, Any]] = None,
    ) -> Optional[str]:
        """Send the exception being handled (or ``exc_info``: a tuple or an exception instance).

        ``data`` overrides top-level fields of the body (``http``, ``user``, ``template``...).
        Returns the event's ``client_supplied_id``, or None when nothing was sent.
        """
        if self.transport is None or _capturing.get():
            return None
        token = _capturing.set(True)
        try:
            return self._capture_exception(exc_info, level, logger_name, extra, tags, fingerprint, data)
        except Exception:  # noqa: BLE001 - the agent's own failure must never reach the app
            logger.exception("opbeat_agent: could not capture an exception")
            return None
        finally:
            _capturing.reset(token)

    def capture_message(
        self,
        message: str,
        params: Any = (),
        *,
        level: str = "error",
        logger_name: Optional[str] = None,
        extra: Optional[Mapping[str, Any]] = None,
        tags: Optional[Mapping[str, Any]] = None,
        fingerprint: Optional[list] = None,
        stack: bool = False,
        data: Optional[Mapping[str, Any]] = None,
    ) -> Optional[str]:
        """``capture_message("Payment %s failed", ("p-1",))``: the template groups the events,
        the formatted text is what a person reads. ``stack=True`` adds the caller's stack."""
        if self.transport is None or _capturing.get():
            return None
        token = _capturing.set(True)
        try:
            event = self._event_base(level, logger_name, extra, tags, fingerprint)
            template = _text(message)
            params = params if isinstance(params, (tuple, list, dict)) else (params,)
            if params:
                try:
                    formatted = template % (tuple(params) if isinstance(params, list) else params)
                except Exception:  # noqa: BLE001 - mismatched placeholders: keep the template as the text
                    formatted = template
                event["param_message"] = {
                    "message": template,
                    "params": self._params(params),
                }
            else:
                formatted = template
            event["message"] = _text(formatted)
            if stack:
                frames = current_stack_frames(config=self.config, scrubber=self.scrubber)
                event["stacktrace"] = {"frames": frames}
                event["culprit"] = culprit_from_frames(frames)
            if data:
                event.update(data)
            return self._send(event)
        except Exception:  # noqa: BLE001 - the agent's own failure must never reach the app
            logger.exception("opbeat_agent: could not capture a message")
            return None
        finally:
            _capturing.reset(token)

    def begin_transaction(self, kind: str = "request") -> Optional[Transaction]:
        """Start timing a unit of work in this context (a request, a task, one loop iteration)."""
        if self.reporter is None:
            return None
        try:
            config = self.config
            return transaction_start(
                kind,
                max_spans=config.transaction_max_spans,
                stack_min_ms=config.span_stack_min_duration,
                stack_max_frames=config.span_stack_max_frames,
            )
        except Exception:  # noqa: BLE001 - the agent's own failure must never reach the app
            logger.exception("opbeat_agent: could not begin a transaction")
            return None

    def end_transaction(self, name: Optional[str] = None, result: Any = None) -> Optional[Transaction]:
        """End the current transaction, named ``name`` (a route, a task name: never a raw URL) with
        ``result`` (an HTTP status, "success"...); the reporter's thread does the rest."""
        if self.reporter is None:
            return None
        try:
            transaction = transaction_finish()
            if transaction is None:
                return None
            if name is not None:
                transaction.name = str(name)
            if result is not None:
                transaction.result = result
            self.reporter.record(transaction)
            return transaction
        except Exception:  # noqa: BLE001 - the agent's own failure must never reach the app
            logger.exception("opbeat_agent: could not end a transaction")
            return None

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until the errors and transactions recorded so far have been sent; False if
        ``timeout`` ran out."""
        if self.transport is None:
            return True
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        try:
            deadline = time.monotonic() + timeout
            handed_over = self.reporter.flush(timeout) if self.reporter is not None else True
            sent = self.transport.flush(max(0.0, deadline - time.monotonic()))
            return handed_over and sent
        except Exception:  # noqa: BLE001
            logger.exception("opbeat_agent: flush failed")
            return False

    def close(self, timeout: Optional[float] = None) -> None:
        try:
            if self.reporter is not None:
                self.reporter.close(timeout)
            if self.transport is not None:
                self.transport.close(timeout)
        except Exception:  # noqa: BLE001
            logger.exception("opbeat_agent: close failed")

    # --- building events ------------------------------------------------------------------------

    def _params(self, params: Any) -> Any:
        if isinstance(params, dict):
            return {str(k): self._param(v) for k, v in params.items()}
        return [self._param(v) for v in params]

    @staticmethod
    def _param(value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return _text(value)[:1024]

    def _event_base(
        self,
        level: str,
        logger_name: Optional[str],
        extra: Optional[Mapping[str, Any]],
        tags: Optional[Mapping[str, Any]],
        fingerprint: Optional[list],
    ) -> dict:
        config = self.config
        event: dict = {
            "organization_id": config.organization_id,
            "app_id": config.app_id,
            "level": level,
            "timestamp": _utc_timestamp(),
            "client_supplied_id": uuid.uuid4().hex,
            "machine": {"hostname": config.hostname},
            "extra": {},
        }
        if logger_name:
            event["logger"] = logger_name
        if config.release:
            event["release"] = config.release
        if config.environment:
            event["environment"] = config.environment
        all_tags: dict = {}
        scope = scope_current()
        if scope is not None:
            if scope.tags:
                all_tags.update(scope.tags)
            if scope.extra:
                event["extra"].update(scope.extra)
            for name, reader in (("http", scope.http), ("user", scope.user)):
                if reader is None:
                    continue
                try:
                    value = reader()
                except Exception:  # noqa: BLE001 - reading a broken request must not lose the error itself
                    logger.debug("opbeat_agent: could not read the request's %s", name, exc_info=True)
                    continue
                if value:
                    event[name] = value
        if tags:
            all_tags.update({str(k): _text(v)[:200] for k, v in tags.items()})
        if all_tags:
            event["tags"] = all_tags
        if extra:
            event["extra"].update({str(k): v for k, v in extra.items()})
        if fingerprint:
            event["fingerprint"] = [_text(part) for part in fingerprint]
        return event

    def _exception_info(self, exc: BaseException) -> dict:
        exc_type = type(exc)
        return {
            "type": exc_type.__name__,
            "value": _text(exc),
            "module": exc_type.__module__,
        }

    def _ignored(self, exc: BaseException) -> bool:
        names = self.config.ignore_exceptions
        if not names:
            return False
        for klass in type(exc).__mro__:
            if klass.__name__ in names or f"{klass.__module__}.{klass.__qualname__}" in names:
                return True
        return False

    def _chain(self, exc: BaseException) -> list:
        """The exceptions behind ``exc``, nearest first: ``raise ... from`` causes and the ones
        being handled when it was raised (unless suppressed with ``from None``)."""
        chain: list = []
        seen = {id(exc)}
        current = exc
        while len(chain) < self.config.max_chained_exceptions:
            if current.__cause__ is not None:
                nxt, reason = current.__cause__, "cause"
            elif current.__context__ is not None and not current.__suppress_context__:
                nxt, reason = current.__context__, "context"
            else:
                break
            if id(nxt) in seen:
                break
            seen.add(id(nxt))
            item = self._exception_info(nxt)
            item["reason"] = reason
            frames = traceback_frames(tb=nxt.__traceback__, config=self.config, scrubber=self.scrubber)
            item["stacktrace"] = {"frames": frames}
            chain.append(item)
            current = nxt
        return chain

    def _capture_exception(self, exc_info, level, logger_name, extra, tags, fingerprint, data) -> Optional[str]:
        if exc_info is None or exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        exc_type, exc, tb = exc_info
        if exc is None:
            return None
        if getattr(exc, _CAPTURED_MARK, False) or self._ignored(exc):
            return None
        try:
            # The same exception often reaches us twice (the framework's signal and the logging
            # handler on django.request): the mark makes the second one a no-op.
            setattr(exc, _CAPTURED_MARK, True)
        except Exception:  # noqa: BLE001 - an exception class with __slots__ or a read-only __setattr__
            pass
        event = self._event_base(level, logger_name, extra, tags, fingerprint)
        info = self._exception_info(exc)
        frames = traceback_frames(tb=tb, config=self.config, scrubber=self.scrubber)
        chain = self._chain(exc)
        if chain:
            info["chain"] = chain
        event["exception"] = info
        event["stacktrace"] = {"frames": frames}
        event["culprit"] = culprit_from_frames(frames)
        event["message"] = f"{info['type']}: {info['value']}" if info["value"] else info["type"]
        if data:
            event.update(data)
        return self._send(event)

    def _send(self, event: dict) -> str:
        event_scrub(event=event, scrubber=self.scrubber)
        self.transport.send(event)
        return event["client_supplied_id"]


def client_from_settings(
    *,
    settings: Optional[Mapping[str, Any]],
    settings_name: str,
    options: Optional[Mapping[str, Any]] = None,
) -> Client:
    """A client configured from a framework's settings mapping, keyword options and the environment."""
    return Client(config=config_build(kwargs=options, settings=settings, settings_name=settings_name))
