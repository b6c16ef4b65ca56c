"""Auto-instrumentation: spans from libraries the app uses without changing its code; each
instrumentation skipped when absent, never wrapped twice, undoable."""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import os
import sqlite3

import pytest

import opbeat_agent
from opbeat_agent import Client
from opbeat_agent.instrumentation import INSTRUMENTATIONS, instrument_all, instrumented, uninstrument_all

from .conftest import IDS


@pytest.fixture
def tx_client(recording):
    client = Client(**{**IDS, "instrument": True}, transport=recording)
    yield client
    client.close(timeout=1)
    uninstrument_all()


def spans_of(client: Client) -> list:
    assert client.flush(10)
    [body] = client.transport.transactions
    [sample] = body["traces"]
    return sample["spans"]


def test_sqlite3_queries_are_spans(tx_client):
    assert "sqlite3" in instrumented()
    tx_client.begin_transaction("request")
    with sqlite3.connect(":memory:") as db:
        assert isinstance(db, sqlite3.Connection)
        db.execute("CREATE TABLE orders (id INTEGER, email TEXT)")
        cursor = db.cursor()
        cursor.execute("INSERT INTO orders VALUES (?, ?)", (1, "a@example.org"))
        cursor.executemany("INSERT INTO orders VALUES (?, ?)", [(2, "b"), (3, "c")])
        rows = db.execute("SELECT id FROM orders WHERE email = 'a@example.org' AND id > 0").fetchall()
    tx_client.end_transaction("GET /orders/", 200)
    assert rows == [(1,)]
    spans = spans_of(tx_client)
    assert [(s["signature"], s["kind"]) for s in spans] == [
        ("CREATE", "db.sqlite.sql"),
        ("INSERT INTO orders", "db.sqlite.sql"),
        ("INSERT INTO orders", "db.sqlite.sql"),
        ("SELECT FROM orders", "db.sqlite.sql"),
    ]
    # The literal typed inline (an email address) never leaves the process.
    assert spans[3]["extra"]["sql"] == "SELECT id FROM orders WHERE email = ? AND id > ?"


def test_sqlite3_connections_and_cursors_stay_of_the_class_the_app_asked_for(tx_client):
    class AppConnection(sqlite3.Connection):
        label = "app connection"

    class AppCursor(sqlite3.Cursor):
        label = "app cursor"

    tx_client.begin_transaction("request")
    db = sqlite3.connect(":memory:", factory=AppConnection)
    positional = sqlite3.connect(":memory:", 5.0, 0, "DEFERRED", True, AppConnection)
    assert isinstance(db, AppConnection) and db.label == "app connection"
    assert isinstance(positional, AppConnection) and type(db).__name__ == "AppConnection"
    cursor = db.cursor(AppCursor)
    assert isinstance(cursor, AppCursor) and cursor.label == "app cursor"
    cursor.execute("SELECT 1")
    positional.execute("SELECT 2")
    with pytest.raises(sqlite3.OperationalError):
        db.execute("SELECT * FROM missing_table")
    tx_client.end_transaction("GET /", 200)
    spans = spans_of(tx_client)
    assert [s["signature"] for s in spans] == ["SELECT", "SELECT", "SELECT FROM missing_table"]
    assert spans[2]["duration"] >= 0  # a failing query's span is ended too


def test_outside_a_transaction_nothing_is_recorded_and_results_are_the_same(tx_client):
    db = sqlite3.connect(":memory:")
    assert db.execute("SELECT 1 + 1").fetchone() == (2,)
    assert tx_client.flush(5) and tx_client.transport.transactions == []


def test_never_wrapped_twice_and_undoable(tx_client):
    original_names = instrumented()
    wrapped_connect = sqlite3.connect
    instrument_all()  # a second client, or a second call
    Client(**{**IDS, "instrument": True}, transport=tx_client.transport)
    assert sqlite3.connect is wrapped_connect and instrumented() == original_names
    tx_client.begin_transaction("request")
    sqlite3.connect(":memory:").execute("SELECT 1")
    tx_client.end_transaction("one span", 200)
    assert len(spans_of(tx_client)) == 1

    uninstrument_all()
    assert instrumented() == []
    assert type(sqlite3.connect(":memory:")) is sqlite3.Connection
    assert not hasattr(http.client.HTTPConnection.putrequest, "__wrapped__")


def test_a_missing_library_is_skipped():
    from opbeat_agent.instrumentation.base import Instrumentation

    class Absent(Instrumentation):
        name = "absent"
        instrument_list = (("no_such_library_xyz", "connect"),)

    assert Absent().instrument() is False


def test_http_client_and_requests_calls_are_spans(tx_client, intake):
    tx_client.begin_transaction("request")
    connection = http.client.HTTPConnection("127.0.0.1", intake.port, timeout=10)
    connection.request("POST", "/api/v1/organizations/o/apps/a/errors/?token=abc", body=json.dumps({"m": 1}))
    assert connection.getresponse().status == 202
    requests = pytest.importorskip("requests")
    assert requests.post(f"{intake.url}/api/v1/organizations/o/apps/a/errors/", json={"m": 2}).status_code == 202
    tx_client.end_transaction("GET /checkout/", 200)

    spans = spans_of(tx_client)
    assert [(s["signature"], s["kind"]) for s in spans] == [
        ("POST 127.0.0.1", "ext.http"),
        ("POST 127.0.0.1", "ext.http.requests"),  # one span: not again for http.client below it
    ]
    assert spans[0]["extra"]["url"] == f"{intake.url}/api/v1/organizations/o/apps/a/errors/"  # no query string


def test_the_agent_does_not_record_its_own_requests(tx_client, intake):
    from opbeat_agent.transport import HTTPTransport

    sender = Client(**{**IDS, "instrument": True}, servers=[intake.url], transport=HTTPTransport)
    tx_client.begin_transaction("request")
    sender.capture_message("sent while a transaction is open")
    assert sender.flush(10)
    tx_client.end_transaction("GET /", 200)
    sender.close(timeout=1)
    assert spans_of(tx_client) == []


def test_redis_commands_are_spans(tx_client, redis_url):
    redis = pytest.importorskip("redis")
    connection = redis.Redis.from_url(redis_url)
    tx_client.begin_transaction("request")
    connection.set("opbeat-agent-test", "secret value")
    assert connection.get("opbeat-agent-test") == b"secret value"
    with connection.pipeline() as pipe:
        pipe.incr("opbeat-agent-counter").delete("opbeat-agent-counter").execute()
    tx_client.end_transaction("GET /", 200)
    connection.delete("opbeat-agent-test")
    assert [(s["signature"], s["kind"]) for s in spans_of(tx_client)] == [
        ("SET", "db.redis"),
        ("GET", "db.redis"),
        ("PIPELINE", "db.redis"),
    ]


def test_every_instrumentation_lists_what_it_patches():
    names = [i.name for i in INSTRUMENTATIONS]
    assert len(names) == len(set(names))
    for instrumentation in INSTRUMENTATIONS:
        assert instrumentation.instrument_list and all(len(entry) == 2 for entry in instrumentation.instrument_list)


def test_psycopg2_queries_are_spans_and_the_connection_stays_real(tx_client, postgres_url):
    psycopg2 = pytest.importorskip("psycopg2")
    import psycopg2.extensions
    import psycopg2.extras
    from psycopg2 import sql

    assert "psycopg2" in instrumented()
    connection = psycopg2.connect(postgres_url)
    dict_connection = psycopg2.connect(postgres_url, cursor_factory=psycopg2.extras.RealDictCursor)
    try:
        # What a proxy would break: psycopg2's C functions that insist on a real connection.
        assert type(connection) is psycopg2.extensions.connection
        psycopg2.extras.register_default_jsonb(conn_or_curs=connection, loads=lambda x: x)
        assert sql.Identifier("orders").as_string(connection) == '"orders"'

        tx_client.begin_transaction("request")
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE orders (id int, email text)")
            cursor.executemany("INSERT INTO orders VALUES (%s, %s)", [(1, "a@example.org"), (2, "b@example.org")])
            cursor.execute(sql.SQL("SELECT id FROM {} WHERE email = %s").format(sql.Identifier("orders")), ("a@example.org",))
            assert cursor.fetchall() == [(1,)]
        with dict_connection.cursor() as cursor:
            cursor.execute("SELECT 41 + 1 AS answer")
            assert cursor.fetchone() == {"answer": 42}
        tx_client.end_transaction("GET /pg/", 200)
    finally:
        connection.close()
        dict_connection.close()
    spans = spans_of(tx_client)
    assert [(s["signature"], s["kind"]) for s in spans] == [
        ("CREATE", "db.postgresql.sql"),
        ("INSERT INTO orders", "db.postgresql.sql"),
        ("SELECT FROM orders", "db.postgresql.sql"),
        ("SELECT", "db.postgresql.sql"),
    ]
    assert spans[2]["extra"]["sql"] == 'SELECT id FROM "orders" WHERE email = %s'
    assert spans[3]["extra"]["sql"] == "SELECT ? + ? AS answer"


def test_psycopg3_queries_are_spans_sync_and_async(tx_client, postgres_url):
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    assert "psycopg" in instrumented()
    url = postgres_url.replace("postgres://", "postgresql://", 1)
    connection = psycopg.connect(url, autocommit=True)
    try:
        # The real objects: adapters, row factories and psycopg.sql keep working.
        assert type(connection) is psycopg.Connection
        assert sql.Identifier("orders").as_string(connection) == '"orders"'
        tx_client.begin_transaction("request")
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE orders (id int, email text)")
            cursor.executemany("INSERT INTO orders VALUES (%s, %s)", [(1, "a@example.org"), (2, "b@example.org")])
            cursor.execute(sql.SQL("SELECT id FROM {} WHERE email = %s").format(sql.Identifier("orders")), ("a@example.org",))
            assert cursor.fetchall() == [(1,)]
        assert connection.execute("SELECT count(*) FROM orders WHERE id > 1").fetchone() == (1,)
        connection.execute("SELECT pg_sleep(0.02)")  # slow: carries a stack
        tx_client.end_transaction("GET /pg3/", 200)
    finally:
        connection.close()

    async def run_async():
        async with await psycopg.AsyncConnection.connect(url) as aconnection:
            tx_client.begin_transaction("request")
            async with aconnection.cursor() as cursor:
                await cursor.execute("SELECT 'secret literal' AS answer, %s::int", (7,))
                assert await cursor.fetchone() == ("secret literal", 7)
                await cursor.executemany("SELECT %s", [(1,), (2,)])
            tx_client.end_transaction("GET /pg3-async/", 200)

    asyncio.run(run_async())
    assert tx_client.flush(10)
    traces = {t["transaction"]: t["spans"] for body in tx_client.transport.transactions for t in body["traces"]}
    spans = traces["GET /pg3/"]
    assert [(s["signature"], s["kind"]) for s in spans] == [
        ("CREATE", "db.postgresql.sql"),
        ("INSERT INTO orders", "db.postgresql.sql"),
        ("SELECT FROM orders", "db.postgresql.sql"),
        ("SELECT FROM orders", "db.postgresql.sql"),
        ("SELECT", "db.postgresql.sql"),
    ]
    assert spans[2]["extra"]["sql"] == 'SELECT id FROM "orders" WHERE email = %s'
    assert spans[3]["extra"]["sql"] == "SELECT count(*) FROM orders WHERE id > ?"
    # The slow one says where it came from: psycopg's Connection.execute, called by this test.
    stack = spans[4]["stack"]
    assert spans[4]["duration"] >= 20.0
    assert [(f["module"], f["function"]) for f in stack[-2:]] == [
        (__name__, "test_psycopg3_queries_are_spans_sync_and_async"),
        ("psycopg.connection", "execute"),
    ]
    assert not any(f["module"].startswith("opbeat_agent") for f in stack)
    assert "stack" not in spans[0] or spans[0]["duration"] >= 5.0
    async_spans = traces["GET /pg3-async/"]
    assert [(s["signature"], s["kind"]) for s in async_spans] == [("SELECT", "db.postgresql.sql")] * 2
    # Parameters are never read, and the literal typed inline never leaves the process.
    assert async_spans[0]["extra"]["sql"] == "SELECT ? AS answer, %s::int"
    assert "secret" not in json.dumps(traces)


def test_sqlalchemy_statements_are_one_span_each(tx_client, request):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy import event, text
    from sqlalchemy.engine import Engine

    assert "sqlalchemy" in instrumented()
    engines = [sqlalchemy.create_engine("sqlite://")]
    # SQLite always; PostgreSQL through psycopg 3 too when the suite runs against the real one.
    if os.environ.get("DATABASE_URL", "").startswith("postgres") and importlib.util.find_spec("psycopg"):
        postgres_url = request.getfixturevalue("postgres_url")
        engines.append(sqlalchemy.create_engine(postgres_url.replace("postgres://", "postgresql+psycopg://", 1)))
    for engine in engines:
        with engine.connect() as conn:  # the dialect's own first-connect queries happen here
            conn.execute(text("SELECT 1"))
        tx_client.begin_transaction("request")
        with engine.connect() as conn:
            conn.execute(text("CREATE TEMP TABLE orders (id int, email text)"))
            conn.execute(text("INSERT INTO orders VALUES (:id, :email)"), [{"id": 1, "email": "a@x"}, {"id": 2, "email": "b@x"}])
            rows = conn.execute(text("SELECT id FROM orders WHERE email = 'a@x' AND id < :n"), {"n": 9}).fetchall()
            assert [tuple(r) for r in rows] == [(1,)]
            with pytest.raises(sqlalchemy.exc.DBAPIError):
                conn.execute(text("SELECT nope FROM missing_table"))
        with opbeat_agent.trace("after the failure"):
            pass
        tx_client.end_transaction(f"GET /{engine.dialect.name}/", 200)
    assert tx_client.flush(10)
    traces = {t["transaction"]: t["spans"] for body in tx_client.transport.transactions for t in body["traces"]}
    assert set(traces) == {f"GET /{engine.dialect.name}/" for engine in engines}
    for engine in engines:
        spans = traces[f"GET /{engine.dialect.name}/"]
        kind = f"db.{engine.dialect.name}.sql"
        # One span per statement: the driver underneath (sqlite3, psycopg) does not record it again.
        assert [(s["signature"], s["kind"]) for s in spans if s["kind"] == kind] == [
            ("CREATE", kind),
            ("INSERT INTO orders", kind),
            ("SELECT FROM orders", kind),
            ("SELECT FROM missing_table", kind),
        ]
        assert spans[2]["extra"]["sql"].startswith("SELECT id FROM orders WHERE email = ? AND id <")
        # The failed statement's span was ended, so the next span is not its child.
        assert spans[4]["signature"] == "after the failure" and spans[4]["parent"] == 0
        # ROLLBACK/BEGIN the pool issues outside cursor.execute are not statements of the app.
        assert all(s["kind"] in (kind, "code.custom") for s in spans)
    uninstrument_all()
    assert not event.contains(Engine, "before_cursor_execute", sqlalchemy_listener())
    for engine in engines:
        engine.dispose()


def sqlalchemy_listener():
    from opbeat_agent.instrumentation import sqlalchemy as instrumentation

    return instrumentation._before


def test_httpx_calls_are_spans_sync_and_async(tx_client, intake):
    httpx = pytest.importorskip("httpx")
    assert "httpx" in instrumented()
    url = f"{intake.url}/api/v1/organizations/o/apps/a/errors/"
    tx_client.begin_transaction("request")
    with httpx.Client() as http:
        assert http.post(f"{url}?token=abc", json={"m": 1}).status_code == 202

    async def post():
        async with httpx.AsyncClient() as http:
            return (await http.post(url, json={"m": 2})).status_code

    assert asyncio.run(post()) == 202
    tx_client.end_transaction("GET /fetch/", 200)
    spans = spans_of(tx_client)
    assert [(s["signature"], s["kind"]) for s in spans] == [
        ("POST 127.0.0.1", "ext.http.httpx"),
        ("POST 127.0.0.1", "ext.http.httpx"),
    ]
    assert spans[0]["extra"]["url"] == url  # no query string
    assert len(intake.received) == 2


def test_urllib3_calls_are_spans_and_requests_stays_one_span(tx_client, intake):
    urllib3 = pytest.importorskip("urllib3")
    requests = pytest.importorskip("requests")
    assert "urllib3" in instrumented()
    url = f"{intake.url}/api/v1/organizations/o/apps/a/errors/"
    tx_client.begin_transaction("request")
    pool = urllib3.PoolManager()
    assert pool.request("POST", f"{url}?api_key=abc", json={"m": 1}).status == 202
    assert requests.post(url, json={"m": 2}).status_code == 202
    tx_client.end_transaction("GET /fetch/", 200)
    spans = spans_of(tx_client)
    assert [(s["signature"], s["kind"]) for s in spans] == [
        ("POST 127.0.0.1", "ext.http.urllib3"),  # not again for http.client underneath
        ("POST 127.0.0.1", "ext.http.requests"),  # not again for urllib3 underneath
    ]
    assert spans[0]["extra"]["url"] == url


def test_new_instrumentations_are_never_wrapped_twice_and_undoable(tx_client):
    psycopg = pytest.importorskip("psycopg")
    httpx = pytest.importorskip("httpx")
    urllib3 = pytest.importorskip("urllib3")
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.engine import Engine

    # Read from the class dicts: attribute access on a class hands out a new bound wrapper each time.
    slots = {
        "psycopg": (psycopg.Cursor, "execute"),
        "httpx": (httpx.AsyncClient, "send"),
        "urllib3": (urllib3.connectionpool.HTTPConnectionPool, "urlopen"),
    }
    patched = {name: owner.__dict__[attr] for name, (owner, attr) in slots.items()}
    assert all(hasattr(function, "__wrapped__") for function in patched.values())
    instrument_all()
    Client(**{**IDS, "instrument": True}, transport=tx_client.transport)
    for name, (owner, attr) in slots.items():
        assert owner.__dict__[attr] is patched[name]
        assert not hasattr(patched[name].__wrapped__, "__wrapped__")
    engine = sqlalchemy.create_engine("sqlite://")
    with engine.connect() as conn:
        tx_client.begin_transaction("request")
        conn.execute(sqlalchemy.text("SELECT 1"))
        tx_client.end_transaction("GET /", 200)
    assert [s["kind"] for s in spans_of(tx_client)] == ["db.sqlite.sql"]  # one listener, one span

    uninstrument_all()
    assert not hasattr(psycopg.Cursor.execute, "__wrapped__")
    assert not hasattr(psycopg.AsyncCursor.executemany, "__wrapped__")
    assert not hasattr(httpx.Client.send, "__wrapped__") and not hasattr(httpx.AsyncClient.send, "__wrapped__")
    assert not hasattr(urllib3.connectionpool.HTTPConnectionPool.urlopen, "__wrapped__")
    assert not sqlalchemy.event.contains(Engine, "before_cursor_execute", sqlalchemy_listener())
    tx_client.transport.clear()
    engine.dispose()  # the pooled sqlite3 connection was opened (and proxied) while instrumented
    with engine.connect() as conn:
        tx_client.begin_transaction("request")
        conn.execute(sqlalchemy.text("SELECT 1"))
        tx_client.end_transaction("GET /", 200)
    assert spans_of(tx_client) == []


def test_django_orm_queries_are_one_span_each_over_the_instrumented_driver(tx_client, transactional_db):
    # The server's own database (SQLite embedded, PostgreSQL through psycopg2 in production),
    # reopened after instrumenting, so Django's cursors are the driver's traced ones: Django's
    # execute_wrapper records the query, and the driver's instrumentation below it does not
    # record it again.
    from django.db import connection

    from opbeat_agent.integrations.django.setup import _query_span

    connection.close()
    connection.ensure_connection()  # its set-up queries (time zone...) before the transaction
    if connection.vendor == "postgresql":  # (Django never really closes an in-memory SQLite test database)
        assert getattr(type(connection.connection.cursor()), "_opbeat_agent_traced", False)  # the driver's traced cursors
    with connection.execute_wrapper(_query_span):
        tx_client.begin_transaction("request")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 WHERE 2 > %s", [1])
            assert cursor.fetchone() == (1,)
        tx_client.end_transaction("GET /orm/", 200)
    spans = spans_of(tx_client)
    assert [(s["signature"], s["kind"]) for s in spans] == [("SELECT", f"db.{connection.vendor}.sql")]
    assert spans[0]["extra"]["sql"] == "SELECT ? WHERE ? > %s"


def test_instrumenting_imports_no_library_and_instruments_one_imported_later():
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    pytest.importorskip("httpx")
    pytest.importorskip("sqlalchemy")
    script = textwrap.dedent("""
        import json, sys
        import opbeat_agent
        from opbeat_agent.instrumentation import instrumented
        client = opbeat_agent.Client(organization_id="o", app_id="a", secret_token="t",
                                     transport=opbeat_agent.MemoryTransport())
        before = {name: name in sys.modules for name in ("httpx", "sqlalchemy", "django", "redis", "psycopg")}
        import httpx
        import sqlite3  # the standard library's, imported only now too
        client.begin_transaction("request")
        sqlite3.connect(":memory:").execute("SELECT 1")
        client.end_transaction("GET /", 200)
        client.flush(5)
        spans = [s["kind"] for t in client.transport.transactions[0]["traces"] for s in t["spans"]]
        print(json.dumps({"before": before, "after": instrumented(), "spans": spans,
                          "wrapped": hasattr(httpx.Client.__dict__["send"], "__wrapped__")}))
    """)
    agent = Path(__file__).resolve().parents[2] / "agent"
    result = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": str(agent), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["before"] == {"httpx": False, "sqlalchemy": False, "django": False, "redis": False, "psycopg": False}
    assert {"httpx", "sqlite3", "http.client"} <= set(report["after"]) and "sqlalchemy" not in report["after"]
    assert report["wrapped"] is True and report["spans"] == ["db.sqlite.sql"]
