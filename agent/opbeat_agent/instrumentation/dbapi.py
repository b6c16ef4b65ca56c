"""DB-API 2 drivers whose classes are C types (sqlite3, psycopg2): a span per
``execute``/``executemany``, kind ``db.<vendor>.sql``, signature ``SELECT FROM orders``, and the
statement with literals replaced (parameters are never read).

Their methods cannot be patched, so ``connect`` is given a subclass instead, through each driver's
own mechanism for custom classes: sqlite3's ``factory`` (a ``Connection`` subclass whose
``cursor()`` hands out ``Cursor`` subclasses) and psycopg2's ``cursor_factory``. The objects the app
gets are real connections and cursors of the classes it asked for (``isinstance``, ``type(...)
.__name__``, psycopg2's C functions that refuse anything else), and a query costs one Python call
more, not an attribute-forwarding proxy on every access. A factory the app passes itself is
subclassed the same way.
"""

from __future__ import annotations

from typing import Any, Callable

from ..tracing import query_call
from .base import Instrumentation, statement_text

_TRACED = "_opbeat_agent_traced"


def _traced_subclass(cache: dict, base: type, namespace: dict) -> type:
    traced = cache.get(base)
    if traced is None:
        # Same name and module as the class the app asked for: code that looks at
        # type(connection).__name__ (or a repr in a log line) sees what it expects.
        traced = type(base.__name__, (base,), {**namespace, "__module__": base.__module__, _TRACED: True})
        cache[base] = traced
    return traced


# --- sqlite3 ----------------------------------------------------------------------------------

_SQLITE_KIND = "db.sqlite.sql"
_sqlite_cursors: dict = {}
_sqlite_connections: dict = {}


def sqlite_cursor_class(base: type) -> type:
    """A subclass of sqlite3 cursor class ``base`` whose execute/executemany record spans."""

    def execute(self: Any, sql: Any, *args: Any) -> Any:
        return query_call(_SQLITE_KIND, sql, base.execute, self, sql, *args)

    def executemany(self: Any, sql: Any, *args: Any) -> Any:
        return query_call(_SQLITE_KIND, sql, base.executemany, self, sql, *args)

    return _traced_subclass(_sqlite_cursors, base, {"execute": execute, "executemany": executemany})


def sqlite_connection_class(base: type) -> type:
    """A subclass of sqlite3 connection class ``base``: its cursors are traced, and so are its
    ``execute`` shortcuts (which run the statement in C, past the cursor's Python ``execute``)."""
    import sqlite3

    def cursor(self: Any, factory: Any = sqlite3.Cursor) -> Any:
        if isinstance(factory, type) and issubclass(factory, sqlite3.Cursor) and not getattr(factory, _TRACED, False):
            factory = sqlite_cursor_class(factory)
        return base.cursor(self, factory)

    def execute(self: Any, sql: Any, *args: Any) -> Any:
        return query_call(_SQLITE_KIND, sql, base.execute, self, sql, *args)

    def executemany(self: Any, sql: Any, *args: Any) -> Any:
        return query_call(_SQLITE_KIND, sql, base.executemany, self, sql, *args)

    return _traced_subclass(
        _sqlite_connections, base, {"cursor": cursor, "execute": execute, "executemany": executemany}
    )


class SQLite(Instrumentation):
    name = "sqlite3"
    # Both names of the same function: Django calls sqlite3.dbapi2.connect.
    instrument_list = (("sqlite3", "connect"), ("sqlite3.dbapi2", "connect"))

    def _wrapper(self, module: str, path: str) -> Callable:
        # Inside a transaction or not: a connection opened at start-up serves the requests that
        # come later.
        def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
            try:
                import sqlite3

                # connect(database, timeout, detect_types, isolation_level, check_same_thread, factory, ...)
                positional = len(args) > 5
                base = args[5] if positional else kwargs.get("factory", sqlite3.Connection)
                if isinstance(base, type) and issubclass(base, sqlite3.Connection) and not getattr(base, _TRACED, False):
                    traced = sqlite_connection_class(base)
                    if positional:
                        args = (*args[:5], traced, *args[6:])
                    else:
                        kwargs = {**kwargs, "factory": traced}
            except Exception:  # noqa: BLE001 - an unexpected factory: connect untraced
                pass
            return wrapped(*args, **kwargs)

        return wrapper


# --- psycopg2 ---------------------------------------------------------------------------------

_POSTGRES_KIND = "db.postgresql.sql"
_psycopg2_cursors: dict = {}


def traced_cursor_class(base: type) -> type:
    """A subclass of psycopg2 cursor class ``base`` whose execute/executemany record spans."""

    def execute(self: Any, query: Any, vars: Any = None) -> Any:
        sql = query if isinstance(query, str) else statement_text(query, self)
        return query_call(_POSTGRES_KIND, sql, base.execute, self, query, vars)

    def executemany(self: Any, query: Any, vars_list: Any) -> Any:
        sql = query if isinstance(query, str) else statement_text(query, self)
        return query_call(_POSTGRES_KIND, sql, base.executemany, self, query, vars_list)

    return _traced_subclass(_psycopg2_cursors, base, {"execute": execute, "executemany": executemany})


class Psycopg2(Instrumentation):
    name = "psycopg2"
    instrument_list = (("psycopg2", "connect"),)

    def _wrapper(self, module: str, path: str) -> Callable:
        def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
            try:
                import psycopg2.extensions

                base = kwargs.get("cursor_factory") or psycopg2.extensions.cursor
                if isinstance(base, type) and not getattr(base, _TRACED, False):
                    kwargs = {**kwargs, "cursor_factory": traced_cursor_class(base)}
            except Exception:  # noqa: BLE001 - an unexpected cursor_factory: connect untraced
                pass
            return wrapped(*args, **kwargs)

        return wrapper
