"""SQLAlchemy, through its engine events rather than by wrapping functions: a listener on the
``Engine`` class hears every engine's ``before_cursor_execute``/``after_cursor_execute`` (and
``handle_error``, so a failing statement's span ends too). Kind ``db.<dialect>.sql``
(``db.postgresql.sql``, ``db.sqlite.sql``), signature ``SELECT FROM orders``, the statement as
SQLAlchemy sent it with literals replaced (bound parameters are never read).

The span is the current one while the driver runs the statement, so the driver's own
instrumentation (sqlite3, psycopg2, psycopg) does not record the same query again.
``instrument_list`` names the events listened to; ``uninstrument`` removes the listeners.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..sql import sql_describe
from ..tracing import trace, transaction_current
from .base import Instrumentation

logger = logging.getLogger("opbeat_agent.instrumentation")

_ATTR = "_opbeat_agent_trace"


def _before(conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: bool) -> None:
    if transaction_current() is None or context is None:
        return
    try:
        signature, extra = sql_describe(statement if isinstance(statement, str) else str(statement))
        span = trace(signature, f"db.{conn.dialect.name}.sql", extra)
        span.__enter__()
        setattr(context, _ATTR, span)
    except Exception:  # noqa: BLE001 - recording must never break the query
        logger.debug("opbeat_agent: could not record a SQLAlchemy statement", exc_info=True)


def _end(context: Any) -> None:
    span = getattr(context, _ATTR, None) if context is not None else None
    if span is not None:
        setattr(context, _ATTR, None)
        span.__exit__(None, None, None)


def _after(conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: bool) -> None:
    _end(context)


def _error(exception_context: Any) -> None:
    _end(getattr(exception_context, "execution_context", None))


_LISTENERS = {"before_cursor_execute": _before, "after_cursor_execute": _after, "handle_error": _error}


class SQLAlchemy(Instrumentation):
    name = "sqlalchemy"
    instrument_list = tuple(("sqlalchemy.engine", f"Engine.{event}") for event in _LISTENERS)

    def __init__(self) -> None:
        super().__init__()
        self._engine_class: Any = None

    @property
    def instrumented(self) -> bool:
        return self._engine_class is not None

    def instrument(self) -> bool:
        if self._engine_class is not None:
            return True
        if not self.available():
            return False
        try:
            event = importlib.import_module("sqlalchemy.event")
            engine_class = importlib.import_module("sqlalchemy.engine").Engine
            for name, listener in _LISTENERS.items():
                # event.contains: a second client (or agent) in the process does not listen twice.
                if not event.contains(engine_class, name, listener):
                    event.listen(engine_class, name, listener)
        except Exception:  # noqa: BLE001 - an unexpected SQLAlchemy version: leave it untouched
            logger.debug("opbeat_agent: not instrumenting sqlalchemy", exc_info=True)
            return False
        self._engine_class = engine_class
        return True

    def uninstrument(self) -> None:
        engine_class, self._engine_class = self._engine_class, None
        if engine_class is None:
            return
        event = importlib.import_module("sqlalchemy.event")
        for name, listener in _LISTENERS.items():
            if event.contains(engine_class, name, listener):
                event.remove(engine_class, name, listener)
