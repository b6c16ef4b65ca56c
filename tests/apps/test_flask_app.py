"""The example Flask app (tests/apps/flask_app.py) with the agent, driven by Flask's test client;
events land in the recording transport."""

from __future__ import annotations

import pytest

pytest.importorskip("flask")

import opbeat_agent  # noqa: E402
from opbeat_agent import MemoryTransport  # noqa: E402

from .flask_app import create_app  # noqa: E402

IDS = {"ORGANIZATION_ID": "org1", "APP_ID": "app1", "SECRET_TOKEN": "sekrit-token", "INSTRUMENT": False}


@pytest.fixture
def recording():
    opbeat_agent.set_client(None)
    transport = MemoryTransport()
    yield transport
    opbeat_agent.set_client(None)


@pytest.fixture
def browser(recording):
    app = create_app(**IDS, TRANSPORT=recording, RELEASE="r1")
    return app.test_client()


def test_an_unhandled_error_is_a_500_and_one_event(browser, recording):
    browser.set_cookie("sessionid", "abc")
    browser.set_cookie("other", "1")
    response = browser.get("/error?foo=bar&password=pw", headers={"User-Agent": "capture-script/1.0"})
    assert response.status_code == 500
    [event] = recording.events
    assert event["exception"] == {"type": "ZeroDivisionError", "value": "division by zero", "module": "builtins"}
    assert event["culprit"] == "tests.apps.flask_app.error"
    assert event["release"] == "r1"
    assert event["extra"] == {"app": "<Flask 'tests.apps.flask_app'>"}
    http = event["http"]
    assert http["method"] == "GET"
    assert http["url"] == "http://localhost/error?foo=bar&password=********"
    assert http["query_string"] == "foo=bar&password=********"
    # Cookies keep their names and lose every value (a session can hide under any name).
    assert http["cookies"] == {"sessionid": "********", "other": "********"}
    assert http["headers"]["User-Agent"] == "capture-script/1.0"
    assert http["headers"]["Cookie"] == "sessionid=********; other=********"
    assert http["env"]["REMOTE_ADDR"] == "127.0.0.1"
    frame = event["stacktrace"]["frames"][-1]
    assert frame["function"] == "error" and frame["in_app"] is True
    assert frame["vars"] == {"divisor": 0, "secret_password": "********"}
    assert frame["pre_context"][-1] == '        secret_password = "hunter2"  # noqa: F841 - to see local-variable capture and scrubbing'
    # Flask's and Werkzeug's own frames hold the raw request (environ, the Request repr): the
    # password in the query string is masked there too.
    import json

    assert "password=pw" not in json.dumps(event)
    assert any("password=********" in json.dumps(f.get("vars")) for f in event["stacktrace"]["frames"] if not f["in_app"])


def test_form_body_is_scrubbed(browser, recording):
    response = browser.post("/checkout", data={"qty": "3", "password": "pw", "cc": "4111 1111 1111 1111"})
    assert response.status_code == 500
    assert recording.events[0]["http"]["data"] == {"qty": "3", "password": "********", "cc": "********"}


def test_json_body_is_scrubbed(browser, recording):
    response = browser.post("/api/orders", json={"missing": "sku-1", "api_key": "k"})
    assert response.status_code == 500
    assert recording.events[0]["http"]["data"] == {"missing": "sku-1", "api_key": "********"}


def test_abort_404_and_healthy_requests_send_nothing(browser, recording):
    assert browser.get("/").status_code == 200
    assert browser.get("/missing").status_code == 404
    assert recording.events == []


def test_a_handled_exception_captured_in_a_view_carries_the_request(browser, recording):
    response = browser.get("/handled")
    assert response.json == {"status": "handled"}
    [event] = recording.events
    assert event["exception"]["type"] == "ValueError"
    assert event["http"]["url"] == "http://localhost/handled"


def test_logging_in_a_view_is_a_param_message_with_the_request(browser, recording):
    assert browser.get("/pay/p-77").data == b"logged"
    [event] = recording.events
    assert event["param_message"] == {"message": "Payment %s failed", "params": ["p-77"]}
    assert event["http"]["url"] == "http://localhost/pay/p-77"


def test_init_app_and_kwargs_over_app_config(recording):
    from flask import Flask

    from opbeat_agent.integrations.flask import Opbeat

    app = Flask("factory")
    app.config["OPBEAT"] = {**IDS, "APP_ID": "from-config", "TRANSPORT": recording}
    extension = Opbeat(environment="staging")
    extension.init_app(app)

    @app.get("/boom")
    def boom():
        raise LookupError("gone")

    assert app.test_client().get("/boom").status_code == 500
    event = recording.events[0]
    assert (event["app_id"], event["environment"]) == ("from-config", "staging")


def test_every_request_is_a_transaction_named_by_its_url_rule(browser, recording):
    browser.get("/pay/p-1")
    browser.get("/pay/p-2")
    browser.get("/error")
    browser.get("/missing")
    client = opbeat_agent.get_client()
    assert client.flush(10)
    counts: dict = {}
    for body in recording.transactions:
        for h in body["histograms"]:
            counts[(h["transaction"], h["result"])] = counts.get((h["transaction"], h["result"]), 0) + h["count"]
    assert counts == {("GET /pay/<order_id>", 200): 2, ("GET /error", 500): 1, ("GET /missing", 404): 1}
    client.close(timeout=1)


def test_three_queries_and_a_template_are_spans_of_the_request(recording):
    app = create_app(**{**IDS, "INSTRUMENT": True}, TRANSPORT=recording)
    assert b"<li>(2, 20)</li>" in app.test_client().get("/report/2").data
    client = app.extensions["opbeat_agent"].client
    assert client.flush(10)
    [sample] = [t for body in recording.transactions for t in body["traces"] if t["transaction"] == "GET /report/<int:limit>"]
    assert [(s["signature"], s["kind"]) for s in sample["spans"]] == [
        ("CREATE", "db.sqlite.sql"),
        ("INSERT INTO orders", "db.sqlite.sql"),
        ("SELECT FROM orders", "db.sqlite.sql"),
        ("report.html", "template.jinja2"),
    ]
    assert sample["spans"][2]["extra"]["sql"] == "SELECT id, total FROM orders WHERE total > ? LIMIT ?"
    client.close(timeout=1)
