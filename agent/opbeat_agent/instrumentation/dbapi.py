"""DB-API 2 drivers: the connection a driver's ``connect`` returns is wrapped in a proxy whose
cursors record a span per ``execute``/``executemany``: kind ``db.<vendor>.sql``, signature
``SELECT FROM orders``, and the statement with literals replaced (parameters are never read).

sqlite3's connection is a C type whose methods cannot be patched, hence the proxy. psycopg2's
functions refuse a proxied connection (``register_type``, ``quote_ident``), so there the
connection stays real and ``connect`` gets a ``cursor_factory`` that subclasses the cursor class
the app asked for (psycopg2's own mechanism for custom cursors).
"""

from __future__ import annotations

from typing import Any, Callable

import wrapt

from ..sql import sql_signature, sql_strip
from ..tracing import trace, transaction_current
from .base import Instrumentation, inside


def _traced(vendor: str, sql: Any, call: Callable, *args: Any, **kwargs: Any) -> Any:
    if transaction_current() is None or inside("db."):
        return call(*args, **kwargs)
    statement = sql if isinstance(sql, str) else str(sql)
    with trace(sql_signature(statement), f"db.{vendor}.sql", {"sql": sql_strip(statement)}):
        return call(*args, **kwargs)


class CursorProxy(wrapt.ObjectProxy):
    def __init__(self, wrapped: Any, vendor: str) -> None:
        super().__init__(wrapped)
        self._self_vendor = vendor

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        result = _traced(self._self_vendor, sql, self.__wrapped__.execute, sql, *args, **kwargs)
        # sqlite3's execute returns the cursor itself: hand back the proxy, not the bare cursor.
        return self if result is self.__wrapped__ else result

    def executemany(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        result = _traced(self._self_vendor, sql, self.__wrapped__.executemany, sql, *args, **kwargs)
        return self if result is self.__wrapped__ else result

    def __enter__(self) -> Any:
        self.__wrapped__.__enter__()
        return self


class ConnectionProxy(wrapt.ObjectProxy):
    def __init__(self, wrapped: Any, vendor: str) -> None:
        super().__init__(wrapped)
        self._self_vendor = vendor

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return CursorProxy(self.__wrapped__.cursor(*args, **kwargs), self._self_vendor)

    # sqlite3's shortcuts (Connection.execute); a driver without them never reaches these.
    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        cursor = _traced(self._self_vendor, sql, self.__wrapped__.execute, sql, *args, **kwargs)
        return CursorProxy(cursor, self._self_vendor)

    def executemany(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        cursor = _traced(self._self_vendor, sql, self.__wrapped__.executemany, sql, *args, **kwargs)
        return CursorProxy(cursor, self._self_vendor)

    def __enter__(self) -> Any:
        # `with sqlite3.connect(...) as conn:` must keep using the proxy inside the block.
        self.__wrapped__.__enter__()
        return self


class SQLite(Instrumentation):
    name = "sqlite3"
    # Both names of the same function: Django calls sqlite3.dbapi2.connect.
    instrument_list = (("sqlite3", "connect"), ("sqlite3.dbapi2", "connect"))

    def _wrapper(self, module: str, path: str) -> Callable:
        # Always proxy, inside a transaction or not: a connection opened at start-up serves the
        # requests that come later.
        def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
            return ConnectionProxy(wrapped(*args, **kwargs), "sqlite")

        return wrapper


_traced_cursor_classes: dict = {}


def _statement_text(cursor: Any, query: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    as_string = getattr(query, "as_string", None)  # psycopg2.sql.Composable
    if as_string is not None:
        try:
            return as_string(cursor)
        except Exception:  # noqa: BLE001 - fall back to the object's text
            pass
    return str(query)


def traced_cursor_class(base: type) -> type:
    """A subclass of psycopg2 cursor class ``base`` whose execute/executemany record spans."""
    traced = _traced_cursor_classes.get(base)
    if traced is None:

        def execute(self: Any, query: Any, vars: Any = None) -> Any:
            if transaction_current() is None or inside("db."):
                return base.execute(self, query, vars)
            return _traced("postgresql", _statement_text(self, query), base.execute, self, query, vars)

        def executemany(self: Any, query: Any, vars_list: Any) -> Any:
            if transaction_current() is None or inside("db."):
                return base.executemany(self, query, vars_list)
            return _traced("postgresql", _statement_text(self, query), base.executemany, self, query, vars_list)

        traced = type(base.__name__, (base,), {"execute": execute, "executemany": executemany,
                                               "__module__": base.__module__, "_opbeat_agent_traced": True})
        _traced_cursor_classes[base] = traced
    return traced


class Psycopg2(Instrumentation):
    name = "psycopg2"
    instrument_list = (("psycopg2", "connect"),)

    def _wrapper(self, module: str, path: str) -> Callable:
        def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
            try:
                import psycopg2.extensions

                base = kwargs.get("cursor_factory") or psycopg2.extensions.cursor
                if isinstance(base, type) and not getattr(base, "_opbeat_agent_traced", False):
                    kwargs = {**kwargs, "cursor_factory": traced_cursor_class(base)}
            except Exception:  # noqa: BLE001 - an unexpected cursor_factory: connect untraced
                pass
            return wrapped(*args, **kwargs)

        return wrapper
