"""Auto-instrumentation: spans from libraries the app uses without changing its code; each
instrumentation skipped when absent, never wrapped twice, undoable."""

from __future__ import annotations

import http.client
import json
import sqlite3

import pytest

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
