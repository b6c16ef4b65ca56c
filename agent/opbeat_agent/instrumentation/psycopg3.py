"""psycopg 3 (``import psycopg``), in Django or on its own: a span per ``execute``/``executemany``
of its cursor classes, sync and async, kind ``db.postgresql.sql``, signature ``SELECT FROM
orders``, the statement with literals replaced (parameters are never read).

The cursor classes' methods are patched (psycopg 3's classes are Python, unlike psycopg2's), so
the connection and its cursors stay the real objects: ``isinstance``, ``row_factory``, adapters and
``psycopg.sql`` all see what they expect. ``Connection.execute`` goes through ``Cursor.execute``;
``ClientCursor``, ``RawCursor`` and Django's cursors inherit it. A query Django's ORM or
SQLAlchemy already records (their span is the current one) is not recorded again.
"""

from __future__ import annotations

from typing import Any, Callable

from ..sql import sql_signature, sql_strip
from ..tracing import trace
from .base import Instrumentation, first_arg, inside


def statement_text(cursor: Any, query: Any) -> str:
    """The SQL of a str, bytes or ``psycopg.sql.Composable`` query."""
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    as_string = getattr(query, "as_string", None)
    if as_string is not None:
        try:
            return as_string(cursor)
        except Exception:  # noqa: BLE001 - a closed cursor, an unusual Composable: its repr will do
            pass
    return str(query)


def _span_args(instance: Any, args: tuple, kwargs: dict) -> tuple:
    statement = statement_text(instance, first_arg(args, kwargs, "query"))
    return sql_signature(statement), "db.postgresql.sql", {"sql": sql_strip(statement)}


class Psycopg(Instrumentation):
    name = "psycopg"
    instrument_list = (
        ("psycopg", "Cursor.execute"),
        ("psycopg", "Cursor.executemany"),
        ("psycopg", "ServerCursor.execute"),
        ("psycopg", "AsyncCursor.execute"),
        ("psycopg", "AsyncCursor.executemany"),
        ("psycopg", "AsyncServerCursor.execute"),
    )  # fmt: skip

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        if path.startswith("Async"):
            return self._call_async(wrapped, instance, args, kwargs)
        if inside("db."):
            return wrapped(*args, **kwargs)
        with trace(*_span_args(instance, args, kwargs)):
            return wrapped(*args, **kwargs)

    async def _call_async(self, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        # The span times the awaited query, not the creation of the coroutine.
        if inside("db."):
            return await wrapped(*args, **kwargs)
        with trace(*_span_args(instance, args, kwargs)):
            return await wrapped(*args, **kwargs)
