"""The generic WSGI middleware, driven with a plain WSGI app and wsgiref's own test helpers."""

from __future__ import annotations

import io
from wsgiref.util import setup_testing_defaults

import pytest

import opbeat_agent
from opbeat_agent.integrations.wsgi import OpbeatMiddleware


def environ_for(path: str, query: str = "", **extra) -> dict:
    environ = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    environ.update(extra)
    setup_testing_defaults(environ)
    return environ


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise ValueError("boom")
    if path == "/log":
        opbeat_agent.capture_message("inside %s", (path,))
    start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/stream-boom":
        return stream_then_fail()
    return [b"ok"]


def stream_then_fail():
    yield b"part"
    raise IOError("stream broke")


def call(wsgi_app, environ):
    status = {}

    def start_response(s, headers, exc_info=None):
        status["status"] = s

    body_iter = wsgi_app(environ, start_response)
    try:
        return status.get("status"), b"".join(body_iter)
    finally:
        getattr(body_iter, "close", lambda: None)()


def test_an_error_is_captured_with_the_request_and_re_raised(client, recording):
    wrapped = OpbeatMiddleware(app, client=client)
    environ = environ_for(
        "/boom", "q=1&token=abc", HTTP_COOKIE="sessionid=s; theme=dark", HTTP_AUTHORIZATION="Basic x",
        HTTP_X_FORWARDED_FOR="10.0.0.1", REMOTE_ADDR="127.0.0.1",
    )
    with pytest.raises(ValueError):
        call(wrapped, environ)
    [event] = recording.events
    assert event["exception"]["type"] == "ValueError"
    http = event["http"]
    assert http["method"] == "GET"
    assert http["url"] == "http://127.0.0.1/boom?q=1&token=********"
    assert http["query_string"] == "q=1&token=********"
    # Every cookie's value is masked (a session can hide under any name), names kept.
    assert http["cookies"] == {"sessionid": "********", "theme": "********"}
    assert http["headers"]["Authorization"] == "********"
    assert http["headers"]["X-Forwarded-For"] == "10.0.0.1"
    assert http["env"]["REMOTE_ADDR"] == "127.0.0.1"


def test_an_error_while_streaming_is_captured(client, recording):
    wrapped = OpbeatMiddleware(app, client=client)
    with pytest.raises(IOError):
        call(wrapped, environ_for("/stream-boom"))
    assert recording.events[0]["exception"]["value"] == "stream broke"


def test_a_capture_inside_the_request_knows_the_request(client, recording):
    opbeat_agent.set_client(client)
    wrapped = OpbeatMiddleware(app)
    assert call(wrapped, environ_for("/log")) == ("200 OK", b"ok")
    assert recording.events[0]["http"]["url"] == "http://127.0.0.1/log"
    # After the request, captures no longer carry it.
    client.capture_message("outside")
    assert "http" not in recording.events[1]


def test_a_healthy_request_passes_through(client, recording):
    wrapped = OpbeatMiddleware(app, client=client)
    assert call(wrapped, environ_for("/ok")) == ("200 OK", b"ok")
    assert recording.events == []


def named_app(environ, start_response):
    opbeat_agent.transaction_name_set("GET /reports/{id}")
    start_response("201 Created", [])
    return [b"made"]


def test_each_request_is_a_transaction(client, recording):
    for path in ("/ok", "/log"):
        call(OpbeatMiddleware(app, client=client), environ_for(path))
    call(OpbeatMiddleware(named_app, client=client), environ_for("/reports/7"))
    with pytest.raises(ValueError):
        call(OpbeatMiddleware(app, client=client), environ_for("/boom"))
    with pytest.raises(IOError):
        call(OpbeatMiddleware(app, client=client), environ_for("/stream-boom"))
    assert client.flush(10)
    counts: dict = {}
    for body in recording.transactions:
        for h in body["histograms"]:
            counts[(h["transaction"], h["result"])] = counts.get((h["transaction"], h["result"]), 0) + h["count"]
    # Named by the app when it says so; never by the raw path.
    assert counts == {("GET <wsgi>", 200): 2, ("GET /reports/{id}", 201): 1, ("GET <wsgi>", 500): 2}
    client.close(timeout=1)
