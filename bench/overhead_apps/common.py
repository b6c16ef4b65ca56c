"""What both apps share: the SQLite database, the three queries, and each agent's set-up.

The database is a file made once by the bench (``database_create``); each worker process keeps
one connection, as a real app's connection pool would, so a request costs three queries and not a
connect. The sinks' addresses come from the environment the bench sets.
"""

from __future__ import annotations

import os
import random
import sqlite3

AGENT = os.environ.get("BENCH_AGENT", "bare")
DATABASE = os.environ.get("BENCH_DATABASE", "/tmp/opbeat-bench-overhead.sqlite3")
SINK = os.environ.get("BENCH_SINK", "http://127.0.0.1:9")  # the stand-in receiving every agent's data
AGENTS = ("bare", "opbeat", "sentry", "elastic")

QUERIES = (
    ("SELECT count(*) FROM orders WHERE customer_id = ?", lambda n: (n,)),
    ("SELECT id, total, note FROM orders WHERE customer_id = ? ORDER BY total DESC LIMIT 20", lambda n: (n,)),
    ("SELECT name FROM customers WHERE id = ?", lambda n: (n,)),
)


def database_create(path: str = DATABASE) -> None:
    if os.path.exists(path):
        os.unlink(path)
    rng = random.Random(7)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total INTEGER, note TEXT)")
        db.execute("CREATE INDEX orders_customer ON orders (customer_id)")
        db.executemany("INSERT INTO customers VALUES (?, ?)", [(n, f"customer {n}") for n in range(100)])
        db.executemany(
            "INSERT INTO orders (customer_id, total, note) VALUES (?, ?, ?)",
            [(rng.randrange(100), rng.randrange(10_000), f"note {n}") for n in range(5_000)],
        )
    os.chmod(path, 0o644)


def report_rows(execute, customer_id: int) -> dict:
    """The three queries through ``execute(sql, params)`` (a DB-API cursor's, or Django's)."""
    (count,) = execute(QUERIES[0][0], QUERIES[0][1](customer_id)).fetchone()
    rows = [{"id": i, "total": t, "note": note} for i, t, note in execute(QUERIES[1][0], QUERIES[1][1](customer_id)).fetchall()]
    (name,) = execute(QUERIES[2][0], QUERIES[2][1](customer_id)).fetchone()
    return {"customer": name, "count": count, "rows": rows}


def sentry_init() -> None:
    import sentry_sdk

    # Traces on, every transaction sampled: the configuration that compares with ours.
    host = SINK.split("://", 1)[1]
    sentry_sdk.init(dsn=f"http://public@{host}/1", traces_sample_rate=1.0, send_default_pii=False)


def elastic_config() -> dict:
    return {
        "SERVICE_NAME": "bench",
        "SERVER_URL": SINK,
        # No look-ups the bench's sink cannot answer, and no extra metrics thread: traces only.
        "CENTRAL_CONFIG": False,
        "CLOUD_PROVIDER": "none",
        "METRICS_INTERVAL": "0s",
        "TRANSACTION_SAMPLE_RATE": 1.0,
    }


def opbeat_config() -> dict:
    return {
        "ORGANIZATION_ID": "bench",
        "APP_ID": "bench",
        "SECRET_TOKEN": "bench",
        "SERVERS": [SINK],
    }
