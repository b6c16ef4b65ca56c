"""Secrets never leave the host app through the agent, and never reach the database through the
worker whatever client sent them; SQL keeps no literal. Each secret is a distinct string, and the
tests assert that it appears nowhere in what was sent or stored."""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass

import pytest

from opbeat_agent import Client, MemoryTransport, OpbeatHandler
from opbeat_agent.sql import sql_describe, sql_signature, sql_strip
from processing.digest import events_digest
from processing.models import Event, Issue, TransactionTrace
from tests.intake.conftest import IntakeApp, agent_bodies, broker, intake_app, intake_state_clean  # noqa: F401
from tests.performance.conftest import perf  # noqa: F401

IDS = {"organization_id": "org1", "app_id": "app1", "secret_token": "sekrit-token", "instrument": False}
CARD_DIGITS = [4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEApemkey19secret\n-----END RSA PRIVATE KEY-----"
USER_CONTEXT = {"id": 7, "username": "bob", "password": "user-ctx-pw-13"}
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlMTUjwt"


@dataclass
class User:
    name: str
    password: str


class Connection:
    def __repr__(self) -> str:
        return "Connection(host='db', user='app', password='quoted-pw-2')"


# name of the leak -> the secret string that must not appear anywhere in what is sent.
AGENT_SECRETS = {
    "URL userinfo": "s3cr3t-pw-1",
    "quoted value in a repr": "quoted-pw-2",
    "JSON string in a local": "json-pw-3",
    "(Authorization, ...) pairs": "pair-secret-4",
    "pwd": "pwd-secret-5",
    "ssn": "078-05-1120",
    "private_key": "pk-secret-6",
    "jwt local": "jwt-secret-7",
    "api_key: value in a string": "api-key-secret-8",
    "access_token in a repr": "access-tok-9",
    "Bearer string": "Bearer0Secret10xyz",
    "AWS access key id": "AKIAZ7QW3ERTY5UIOP12",
    "card number with dots": "4111.1111.1111.1111",
    "card number as a list of digits": json.dumps(CARD_DIGITS),
    "dict nested past the repr depth": "deep-pw-11",
    "cookie string": "cookie-sess-12",
    "user.password in the user context": "user-ctx-pw-13",
    "user object's password": "user-obj-pw-14",
    "password X in an exception message": "hunter2-15",
    "password X in a log message": "log-pw-16",
    "log argument after 'password'": "log-arg-pw-17",
    "JWT in a string": JWT,
    "PEM private key": "MIIEpAIBAAKCAQEApemkey19secret",
}


def _failing_view() -> None:
    typed_password = "hunter2-15"
    user = User(name="bob", password="user-obj-pw-14")  # noqa: F841
    bearer = f"Authorization: Bearer {JWT}"  # noqa: F841
    key = PEM  # noqa: F841
    database_url = "postgres://app:s3cr3t-pw-1@db.internal:5432/app"  # noqa: F841
    conn = Connection()  # noqa: F841
    payload = '{"user": "bob", "config": {"db": {"password": "json-pw-3"}}}'  # noqa: F841
    headers = [("Authorization", "pair-secret-4"), ("Accept", "*/*")]  # noqa: F841
    pwd = "pwd-secret-5"  # noqa: F841
    ssn = "078-05-1120"  # noqa: F841
    private_key = "pk-secret-6"  # noqa: F841
    jwt = "jwt-secret-7"  # noqa: F841
    note = "calling upstream with api_key: api-key-secret-8 and Bearer Bearer0Secret10xyz"  # noqa: F841
    state = "State({'access_token': 'access-tok-9', 'user': 'bob'})"  # noqa: F841
    aws = "AKIAZ7QW3ERTY5UIOP12"  # noqa: F841
    paid_with = "card 4111.1111.1111.1111 accepted"  # noqa: F841
    digits = list(CARD_DIGITS)  # noqa: F841
    deep = {"a": {"b": {"c": {"d": {"password": "deep-pw-11", "n": 1}}}}}  # noqa: F841
    raw_headers = "Host: shop\r\nCookie: _shop_s=cookie-sess-12; theme=dark\r\n"  # noqa: F841
    form = {"user.password": "form-pw", "user.name": "bob"}  # noqa: F841
    # The frame's source lines travel as written (they are the app's code, not its data): the
    # lines around the raise hold no secret, so only what the scrubber misses can fail the test.
    action = "login"
    raise PermissionError(f"{action} failed for bob: wrong password {typed_password}")


@pytest.fixture
def sent() -> tuple[dict, str]:
    recording = MemoryTransport()
    client = Client(**IDS, transport=recording, include_paths=["tests"])
    try:
        _failing_view()
    except PermissionError:
        client.capture_exception(data={"user": dict(USER_CONTEXT)})
    logger = logging.getLogger("tests.security.scrubbing")
    handler = OpbeatHandler(client, level=logging.WARNING)
    logger.addHandler(handler)
    try:
        logger.error("retrying without password log-pw-16 for %s", "bob")
        logger.error("user %s logged in with password %s", "bob", "log-arg-pw-17")
    finally:
        logger.removeHandler(handler)
    assert len(recording.events) == 3
    return recording.events, json.dumps(recording.events)


@pytest.mark.parametrize("leak", list(AGENT_SECRETS))
def test_the_agent_sends_no_secret(sent, leak):
    _, body = sent
    assert AGENT_SECRETS[leak] not in body


def test_the_agent_keeps_what_is_not_secret(sent):
    events, _ = sent
    [frame_vars] = [f["vars"] for f in events[0]["stacktrace"]["frames"] if f["function"] == "_failing_view"]
    assert frame_vars["database_url"] == "postgres://app:********@db.internal:5432/app"
    assert frame_vars["form"] == {"user.password": "********", "user.name": "bob"}
    assert frame_vars["headers"] == [["Authorization", "********"], ["Accept", "*/*"]]
    assert frame_vars["raw_headers"] == "Host: shop\r\nCookie: _shop_s=********; theme=********\r\n"
    assert events[0]["user"] == {"id": 7, "username": "bob", "password": "********"}
    assert events[0]["exception"]["value"] == "login failed for bob: wrong password ********"
    assert events[2]["param_message"] == {
        "message": "user %s logged in with password %s",
        "params": ["bob", "********"],
    }
    assert events[2]["message"] == "user bob logged in with password ********"


def _not_secret() -> None:
    order = "order 1700000000123 of 2024-01-15"  # noqa: F841
    request_id = "550e8400-e29b-41d4-a716-446655440000"  # noqa: F841
    commit = "3f786850e387550fdab836ed7e6dc881de23001b"  # noqa: F841
    password_length = 12  # noqa: F841
    token_type = "bearer"  # noqa: F841
    author = "alice"  # noqa: F841
    classname = "Invoice"  # noqa: F841
    is_authenticated = True  # noqa: F841
    amount = 1234567890123456  # noqa: F841
    sentence = "Password is too short"  # noqa: F841
    endpoint = "https://api.example.com/v1/orders?page=2"  # noqa: F841
    raise ValueError("nothing secret here")


def test_ordinary_values_are_not_masked():
    recording = MemoryTransport()
    client = Client(**IDS, transport=recording, include_paths=["tests"])
    try:
        _not_secret()
    except ValueError:
        client.capture_exception()
    [frame_vars] = [f["vars"] for f in recording.events[0]["stacktrace"]["frames"] if f["function"] == "_not_secret"]
    assert frame_vars == {
        "order": "order 1700000000123 of 2024-01-15",
        "request_id": "550e8400-e29b-41d4-a716-446655440000",
        "commit": "3f786850e387550fdab836ed7e6dc881de23001b",
        "password_length": 12,
        "token_type": "bearer",
        "author": "alice",
        "classname": "Invoice",
        "is_authenticated": True,
        "amount": 1234567890123456,  # 16 digits, but not a card number (fails Luhn)
        "sentence": "Password is too short",
        "endpoint": "https://api.example.com/v1/orders?page=2",
    }


# --- The worker: a client that scrubs nothing ---------------------------------------------------

WORKER_SECRETS = {
    "URL userinfo in a local": "worker-url-pw-1",
    "quoted value in a repr": "worker-quoted-2",
    "query string in the URL": "worker-qs-3",
    "Authorization header": "worker-auth-4",
    "Cookie header": "worker-cookie-5",
    "cookies dict": "worker-cookie-6",
    "JSON body": "worker-body-7",
    "environ": "worker-env-8",
    "extra nested deep": "worker-extra-9",
    "user context": "worker-user-10",
    "exception message": "worker-exc-11",
    "(name, value) pairs": "worker-pair-14",
    "card number": "5500 0000 0000 0004",
    "AWS key id": "AKIAQ2W3E4R5T6Y7U8I9",
    "JWT": JWT,
}
WORKER_LOG_SECRETS = {"log message": "worker-log-12", "log argument": "worker-arg-13"}


def _unscrubbed_error_body() -> dict:
    """The original opbeat module's Django capture, with secrets where its scrubber misses them."""
    body = next(b for b in agent_bodies() if "django5219" in b.name).event
    frame = body["stacktrace"]["frames"][-1]
    frame["vars"].update(
        database_url="mysql://app:worker-url-pw-1@db/app",
        conn="Connection(password='worker-quoted-2')",
        headers=[["X-Api-Key", "worker-pair-14"]],
        card="5500 0000 0000 0004",
        aws="AKIAQ2W3E4R5T6Y7U8I9",
        token_holder=f"auth header was Bearer {JWT}",
    )
    http = body["http"]
    http["url"] = "http://shop/pay?order=7&access_token=worker-qs-3"
    http["headers"].update(Authorization="Basic worker-auth-4", Cookie="sessionid=worker-cookie-5; theme=dark")
    http["cookies"] = {"sessionid": "abc", "_shop_s": "worker-cookie-6"}
    http["data"] = '{"login": "bob", "credentials": {"pwd": "worker-body-7"}}'
    http["env"]["HTTP_AUTHORIZATION"] = "Bearer worker-env-8"
    body["extra"] = {"a": {"b": {"c": {"d": {"e": {"f": {"secret_key": "worker-extra-9"}}}}}}}
    body["user"] = {"id": "42", "username": "bob", "password": "worker-user-10"}
    body["exception"]["value"] = "could not log in with password worker-exc-11"
    body["message"] = "ZeroDivisionError: could not log in with password worker-exc-11"
    return body


def _unscrubbed_log_body() -> dict:
    body = next(b for b in agent_bodies() if "clientapi_01" in b.name).event
    body["param_message"] = {"message": "password %s rejected for %s", "params": ["worker-arg-13", "bob"]}
    body["message"] = "password worker-arg-13 rejected for bob; token worker-log-12 expired"
    return body


def _stored(intake_app: IntakeApp, client, broker, body: dict) -> tuple[str, Event]:
    response = intake_app.post(client, zlib.compress(json.dumps(body).encode()))
    assert response.status_code == 202, response.content
    result = events_digest(envelopes=broker.envelopes())
    assert result.stored == 1
    event = Event.objects.get(app=intake_app.app)
    issue = Issue.objects.get(pk=event.issue_id)
    stored = json.dumps([event.data, event.title, event.culprit, issue.title, issue.culprit], ensure_ascii=False)
    return stored, event


@pytest.mark.django_db
@pytest.mark.parametrize("leak", list(WORKER_SECRETS))
def test_the_worker_stores_no_secret_of_an_error(intake_app, client, broker, leak):
    stored, _ = _stored(intake_app, client, broker, _unscrubbed_error_body())
    assert WORKER_SECRETS[leak] not in stored


@pytest.mark.django_db
@pytest.mark.parametrize("leak", list(WORKER_LOG_SECRETS))
def test_the_worker_stores_no_secret_of_a_log_message(intake_app, client, broker, leak):
    stored, event = _stored(intake_app, client, broker, _unscrubbed_log_body())
    assert WORKER_LOG_SECRETS[leak] not in stored
    assert event.data["param_message"] == {"message": "password %s rejected for %s", "params": ["********", "bob"]}


@pytest.mark.django_db
def test_the_worker_keeps_the_rest_of_the_event(intake_app, client, broker):
    _, event = _stored(intake_app, client, broker, _unscrubbed_error_body())
    http = event.data["http"]
    assert http["url"] == "http://shop/pay?order=7&access_token=********"
    assert http["headers"]["Cookie"] == "sessionid=********; theme=********"
    assert http["headers"]["Host"] == "127.0.0.1:18000"
    assert http["data"] == {"login": "bob", "credentials": "********"}
    assert event.data["user"] == {"id": "42", "username": "bob", "password": "********"}
    frame = event.data["stacktrace"]["frames"][-1]
    assert frame["vars"]["database_url"] == "mysql://app:********@db/app"
    assert frame["vars"]["divisor"] == 0
    # The source lines are the app's code, shown as written.
    assert frame["pre_context"][-1] == '    secret_password = "hunter2"  # noqa: F841'


# --- Traces: SQL and URLs of any client ----------------------------------------------------------

SQL_WITH_LITERALS = (
    "SELECT * FROM users WHERE email = 'victim@example.com' AND note = E'it\\'s sql-esc-1' "
    "AND body = $$sql-dollar-2$$ AND tag = $t$sql-tag-3$t$ AND key = 0xBEEF5EC4 AND bits = B'1011' "
    "AND pin = -4321 AND ratio = 1.5e-3 AND name = 'o''sql-dq-5' AND raw = X'5EC7'"
)
TRACE_SECRETS = ["victim@example.com", "sql-esc-1", "sql-dollar-2", "sql-tag-3", "0xBEEF5EC4", "1011", "4321",
                 "1.5e-3", "sql-dq-5", "5EC7", "trace-url-pw-6", "trace-qs-7"]  # fmt: skip


def test_the_worker_stores_traces_without_literals_or_credentials(perf):
    frames = [
        {"abs_path": "/srv/app/views.py", "filename": "views.py", "module": "views", "function": "v", "lineno": 3}
    ]
    body = {
        "transactions": [{"transaction": "GET /x", "result": 200, "timestamp": "2026-11-26T00:40:00Z", "durations": [50.0]}],
        "traces": [
            {"transaction": "GET /x", "durations": [[50.0, 50.0]], "signature": "transaction", "kind": "transaction",
             "parents": [], "start_time": 1795653600000.0, "extra": {"_frames": frames}},
            {"transaction": "GET /x", "durations": [[20.0, 50.0]], "signature": "SELECT FROM users", "kind": "db.postgresql.sql",
             "parents": ["transaction"], "start_time": 1.0, "extra": {"_frames": frames, "sql": SQL_WITH_LITERALS}},
            {"transaction": "GET /x", "durations": [[10.0, 50.0]], "signature": "GET http://bob:trace-url-pw-6@api.internal/",
             "kind": "ext.http.requests", "parents": ["transaction"], "start_time": 25.0,
             "extra": {"_frames": frames, "url": "http://bob:trace-url-pw-6@api.internal/v1?token=trace-qs-7"}},
        ],
    }  # fmt: skip
    assert perf.post_original(body).status_code == 202
    perf.work()
    app = perf.app
    [trace] = TransactionTrace.objects.filter(app=app)
    stored = json.dumps(trace.spans)
    for secret in TRACE_SECRETS:
        assert secret not in stored, secret
    sql = next(span["sql"] for span in trace.spans if span["signature"] == "SELECT FROM users")
    assert sql.startswith("SELECT * FROM users WHERE email = ? AND note = E? AND body = ? AND tag = ? AND key = ?")


# --- SQL literals, in the agent ------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement,stripped",
    [
        ("SELECT * FROM t WHERE a = 'it''s x1'", "SELECT * FROM t WHERE a = ?"),
        ("SELECT * FROM t WHERE a = 'it\\'s x2' AND b = 1", "SELECT * FROM t WHERE a = ? AND b = ?"),
        ("SELECT * FROM t WHERE a = E'x3\\'' AND b = %s", "SELECT * FROM t WHERE a = E? AND b = %s"),
        ("SELECT * FROM t WHERE a = 'C:\\' AND b = 'x4'", "SELECT * FROM t WHERE a = ? AND b = ?"),
        ("SELECT $$x5 'quoted'$$, $fn$x6$fn$, $1", "SELECT ?, ?, $1"),
        ("SELECT 0x5EC7, X'5EC8', B'0101', 0b11", "SELECT ?, X?, B?, ?"),
        ("SELECT -42, 3.14, 1e-9, .5, +7 FROM t2 WHERE c1 = :p1", "SELECT ?, ?, ?, ?, ? FROM t2 WHERE c1 = :p1"),
        (
            'SELECT * FROM `t` WHERE name = "x7" AND "t"."c" LIKE "x8%"',
            'SELECT * FROM `t` WHERE name = ? AND "t"."c" LIKE ?',
        ),
        ("SELECT * FROM t WHERE a = 'x9 unterminated", "SELECT * FROM t WHERE a = ?"),
    ],
)
def test_sql_keeps_no_literal(statement, stripped):
    assert sql_strip(statement) == stripped
    assert sql_describe(statement)[1] == {"sql": stripped}


def test_a_signature_never_reads_inside_a_literal():
    assert sql_signature("SELECT 'a from secrets_x10' FROM orders") == "SELECT FROM orders"
    assert sql_signature("DELETE FROM t WHERE note = 'x FROM leaked_x11'") == "DELETE FROM t"


def test_a_redelivered_trace_is_stored_once_and_not_scrubbed_again(perf, monkeypatch):
    import copy

    import processing.rollups as rollups

    url = "http://bob:redelivered-pw-8@api.internal/v1"
    body = {
        "transactions": [{"transaction": "GET /x", "result": 200, "timestamp": "2026-11-26T00:40:00Z", "durations": [50.0]}],
        "traces": [
            {"transaction": "GET /x", "durations": [[50.0, 50.0]], "signature": "transaction", "kind": "transaction",
             "parents": [], "start_time": 1795653600000.0},
            {"transaction": "GET /x", "durations": [[10.0, 50.0]], "signature": f"GET {url}", "kind": "ext.http.requests",
             "parents": ["transaction"], "start_time": 25.0, "extra": {"url": url}},
        ],
    }  # fmt: skip
    assert perf.post_original(body).status_code == 202
    envelopes = perf.broker.envelopes()
    redelivered = copy.deepcopy(envelopes)
    assert rollups.transactions_digest(envelopes=envelopes).rolled_up == 1
    [stored] = TransactionTrace.objects.filter(app=perf.app).values_list("spans", flat=True)
    scrubbed = []
    real_scrub = rollups.span_scrub

    def counting_scrub(*, span, scrubber):
        scrubbed.append(span)
        return real_scrub(span=span, scrubber=scrubber)

    monkeypatch.setattr(rollups, "span_scrub", counting_scrub)
    again = rollups.transactions_digest(envelopes=redelivered)

    assert (again.duplicates, again.rolled_up, again.traces) == (1, 0, 0)
    assert scrubbed == []  # told by its id before any span was scrubbed
    assert list(TransactionTrace.objects.filter(app=perf.app).values_list("spans", flat=True)) == [stored]
    assert "redelivered-pw-8" not in json.dumps(stored) and "bob:********@api.internal" in json.dumps(stored)


@pytest.mark.django_db
def test_the_worker_scrubs_json_held_in_a_string(intake_app, client, broker):
    body = next(b for b in agent_bodies() if "django5219" in b.name).event
    body["stacktrace"]["frames"][-1]["vars"]["payload"] = '{"user": "bob", "db": {"password": "worker-json-15"}}'
    body["extra"] = {"response": '[{"id": 1, "api_key": "worker-json-16"}]'}
    stored, event = _stored(intake_app, client, broker, body)
    assert "worker-json-15" not in stored and "worker-json-16" not in stored
    # Written back as JSON, the way the agent scrubs such a string before sending it.
    assert json.loads(event.data["stacktrace"]["frames"][-1]["vars"]["payload"]) == {"user": "bob", "db": {"password": "********"}}
    assert json.loads(event.data["extra"]["response"]) == [{"id": 1, "api_key": "********"}]


def test_a_query_string_seen_clean_is_not_taken_for_a_clean_url():
    from opbeat_agent.config import DEFAULT_SCRUB_KEYS
    from opbeat_agent.scrub import MASK, Scrubber

    scrubber = Scrubber(keys=DEFAULT_SCRUB_KEYS)
    # As a query string it is one name without a value; as a URL (a path) it is a card number.
    assert scrubber.query_string("4111111111111111") == "4111111111111111"
    assert scrubber.url("4111111111111111") == MASK
    assert scrubber.url("/pay/4111 1111 1111 1111") == f"/pay/{MASK}"
