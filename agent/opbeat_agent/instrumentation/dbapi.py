"""DB-API 2 drivers: the connection a driver's ``connect`` returns is wrapped in a proxy whose
cursors record a span per ``execute``/``executemany``: kind ``db.<vendor>.sql``, signature
``SELECT FROM orders``, and the statement with literals replaced (parameters are never read).

Only sqlite3 for now: its connection is a C type whose methods cannot be patched, hence the
proxy. psycopg2 is left to Django's ``execute_wrapper`` (the Django integration) because
psycopg2's ``register_type`` refuses a proxied connection.
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
