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

from ..sql import sql_describe
from ..tracing import query_call, trace
from .base import Instrumentation, first_arg, inside, statement_text

_KIND = "db.postgresql.sql"


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
        query = first_arg(args, kwargs, "query")
        sql = query if isinstance(query, str) else statement_text(query, instance)
        if path.startswith("Async"):
            return self._call_async(sql, wrapped, args, kwargs)
        return query_call(_KIND, sql, wrapped, *args, **kwargs)

    async def _call_async(self, sql: str, wrapped: Callable, args: tuple, kwargs: dict) -> Any:
        # The span times the awaited query, not the creation of the coroutine.
        if inside("db."):
            return await wrapped(*args, **kwargs)
        signature, extra = sql_describe(sql)
        with trace(signature, _KIND, extra):
            return await wrapped(*args, **kwargs)
