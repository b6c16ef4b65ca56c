"""The errors bodies the client builds, read from the recording transport: the shape the original
opbeat agent sent (tests/fixtures/opbeat) plus our additions."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest

from opbeat_agent import Client, MemoryTransport, Transport

from .conftest import IDS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "opbeat"


def checkout(order_id, amount):
    secret_password = "hunter2"  # noqa: F841 - a local the scrubber must mask
    basket = {"items": list(range(3)), "api_key": "k-123"}  # noqa: F841
    divisor = 0
    return amount / divisor


def test_exception_body_matches_the_original_agent_shape(client, recording):
    try:
        checkout("o-1", 10)
    except ZeroDivisionError:
        event_id = client.capture_exception()

    [event] = recording.events
    original = json.loads((FIXTURES / "opbeat361-patched_py311_flask313_00_POST_errors.json").read_text())
    # Every top-level field the original sends for an exception is there, with the same types.
    for key in ("organization_id", "app_id", "level", "exception", "stacktrace", "culprit", "message",
                "timestamp", "client_supplied_id", "machine", "extra"):
        assert key in event, key
        assert type(event[key]) is type(original[key]), key
    assert event["client_supplied_id"] == event_id and re.fullmatch(r"[0-9a-f]{32}", event_id)
    assert event["organization_id"] == "org1" and event["app_id"] == "app1"
    assert event["exception"] == {"type": "ZeroDivisionError", "value": "division by zero", "module": "builtins"}
    assert event["message"] == "ZeroDivisionError: division by zero"
    assert event["culprit"] == "tests.agent.test_client.checkout"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["timestamp"])
    assert event["level"] == "error"


def test_frames_are_oldest_first_with_context_lines_and_locals(client, recording):
    try:
        checkout("o-1", 10)
    except ZeroDivisionError:
        client.capture_exception()

    frames = recording.events[0]["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["test_frames_are_oldest_first_with_context_lines_and_locals", "checkout"]
    last = frames[-1]
    assert last["module"] == "tests.agent.test_client"
    assert last["filename"] == "tests/agent/test_client.py"
    assert last["abs_path"] == __file__
    assert last["context_line"] == "    return amount / divisor"
    assert last["pre_context"] == [
        '    secret_password = "hunter2"  # noqa: F841 - a local the scrubber must mask',
        '    basket = {"items": list(range(3)), "api_key": "k-123"}  # noqa: F841',
        "    divisor = 0",
    ]
    assert len(last["post_context"]) == 2
    assert last["in_app"] is True and last["library_frame"] is False
    assert last["vars"] == {
        "order_id": "o-1",
        "amount": 10,
        "secret_password": "********",
        "basket": {"items": [0, 1, 2], "api_key": "********"},
        "divisor": 0,
    }


def test_library_and_stdlib_frames_are_not_in_app(client, recording):
    from django.utils.functional import SimpleLazyObject

    lazy = SimpleLazyObject(lambda: checkout("o-2", 1))
    try:
        str(lazy)
    except ZeroDivisionError:
        client.capture_exception()
    frames = recording.events[0]["stacktrace"]["frames"]
    django_frames = [f for f in frames if f["module"].startswith("django.")]
    assert django_frames and all("site-packages" in f["abs_path"] for f in django_frames)
    assert all(f["in_app"] is False and f["library_frame"] is True for f in django_frames)
    assert all(f["in_app"] for f in frames if f["module"].startswith("tests."))
    # The culprit is the newest in-app frame, not the library's.
    assert recording.events[0]["culprit"] == "tests.agent.test_client.checkout"


def test_site_packages_is_never_in_app_even_when_listed(recording):
    from django.utils.functional import SimpleLazyObject

    client = Client(**IDS, transport=recording, include_paths=["django", "tests"])
    try:
        str(SimpleLazyObject(lambda: 1 / 0))
    except ZeroDivisionError:
        client.capture_exception()
    frames = recording.events[0]["stacktrace"]["frames"]
    assert all(not f["in_app"] for f in frames if f["module"].startswith("django."))


def test_chained_exceptions_are_sent_nearest_cause_first(client, recording):
    def load():
        try:
            {}["config"]
        except KeyError as exc:
            raise RuntimeError("config missing") from exc

    def start():
        try:
            load()
        except RuntimeError:
            raise ValueError("cannot start")

    try:
        start()
    except ValueError:
        client.capture_exception()

    exception = recording.events[0]["exception"]
    assert exception["type"] == "ValueError"
    chain = exception["chain"]
    assert [(c["type"], c["value"], c["reason"]) for c in chain] == [
        ("RuntimeError", "config missing", "context"),
        ("KeyError", "'config'", "cause"),
    ]
    assert chain[1]["stacktrace"]["frames"][-1]["function"] == "load"
    assert chain[1]["stacktrace"]["frames"][-1]["context_line"].strip() == '{}["config"]'


def test_context_suppressed_with_from_none_is_not_sent(client, recording):
    try:
        try:
            int("x")
        except ValueError:
            raise LookupError("nope") from None
    except LookupError:
        client.capture_exception()
    assert "chain" not in recording.events[0]["exception"]


def test_capture_message_keeps_the_template_for_grouping(client, recording):
    client.capture_message("Payment %s failed for user %s", ("p-123", "alice"), level="warning", logger_name="shop")
    [event] = recording.events
    assert event["message"] == "Payment p-123 failed for user alice"
    assert event["param_message"] == {"message": "Payment %s failed for user %s", "params": ["p-123", "alice"]}
    assert event["level"] == "warning" and event["logger"] == "shop"
    assert "exception" not in event and "stacktrace" not in event


def test_capture_message_with_mismatched_params_still_sends(client, recording):
    client.capture_message("only %s and %s", ("one",))
    assert recording.events[0]["message"] == "only %s and %s"


def test_capture_message_with_stack(client, recording):
    def report():
        client.capture_message("slow checkout", stack=True)

    report()
    frames = recording.events[0]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "report"
    assert not any(f["module"].startswith("opbeat_agent") for f in frames)


def test_release_environment_tags_fingerprint(recording):
    client = Client(**IDS, transport=recording, release="v1.2.3", environment="staging")
    client.capture_message("hello", tags={"region": "eu"}, fingerprint=["billing", 42], extra={"order": 7})
    event = recording.events[0]
    assert event["release"] == "v1.2.3" and event["environment"] == "staging"
    assert event["tags"] == {"region": "eu"}
    assert event["fingerprint"] == ["billing", "42"]
    assert event["extra"] == {"order": 7}


def test_locals_are_capped_and_a_broken_repr_is_survived(recording):
    class Hostile:
        def __repr__(self):
            raise RuntimeError("repr exploded")

    client = Client(**IDS, transport=recording, local_var_max_length=20, local_var_max_items=3)

    def fail():
        long_text = "x" * 500  # noqa: F841
        many = list(range(100))  # noqa: F841
        hostile = Hostile()  # noqa: F841
        raise KeyError("k")

    try:
        fail()
    except KeyError:
        client.capture_exception()
    local_vars = recording.events[0]["stacktrace"]["frames"][-1]["vars"]
    assert local_vars["long_text"] == "x" * 17 + "..."
    assert local_vars["many"] == [0, 1, 2, "... 97 more"]
    assert local_vars["hostile"] == "<unrepresentable Hostile: RuntimeError>"


def test_deep_recursion_keeps_both_ends_of_the_stack(recording):
    client = Client(**IDS, transport=recording, max_frames=50)

    def recurse(n):
        return recurse(n + 1)

    try:
        recurse(0)
    except RecursionError:
        client.capture_exception()
    frames = recording.events[0]["stacktrace"]["frames"]
    assert len(frames) == 50
    assert frames[0]["function"] == "test_deep_recursion_keeps_both_ends_of_the_stack"
    assert frames[-1]["function"] == "recurse"


def test_the_same_exception_is_sent_once(client, recording):
    try:
        1 / 0
    except ZeroDivisionError as exc:
        client.capture_exception()
        client.capture_exception(exc)
    assert len(recording.events) == 1


def test_ignore_exceptions_by_name(recording):
    client = Client(**IDS, transport=recording, ignore_exceptions=["LookupError"])
    for exc in (KeyError("a"), ValueError("b")):
        try:
            raise exc
        except Exception:
            client.capture_exception()
    assert [e["exception"]["type"] for e in recording.events] == ["ValueError"]


def test_the_agent_never_raises_into_the_app(caplog):
    class BrokenTransport(Transport):
        def send(self, event):
            raise OSError("disk full")

    client = Client(**IDS, transport=BrokenTransport())
    with caplog.at_level(logging.ERROR, logger="opbeat_agent"):
        try:
            1 / 0
        except ZeroDivisionError:
            assert client.capture_exception() is None
        assert client.capture_message("hello") is None
    assert "could not capture" in caplog.text


def test_a_misconfigured_client_is_a_quiet_no_op(caplog, monkeypatch):
    for name in ("OPBEAT_ORGANIZATION_ID", "OPBEAT_APP_ID", "OPBEAT_SECRET_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING, logger="opbeat_agent"):
        client = Client(app_id="a")
    assert not client.active
    assert "organization_id is not set" in caplog.text and "secret_token is not set" in caplog.text
    assert client.capture_message("hello") is None
    assert client.flush() is True


def test_disabled_client_sends_nothing(recording):
    client = Client(**IDS, transport=recording, enabled=False)
    client.capture_message("hello")
    assert recording.events == []


def test_global_api(recording):
    import opbeat_agent

    assert opbeat_agent.capture_message("before init") is None
    opbeat_agent.init(**IDS, transport=recording)
    opbeat_agent.capture_message("after %s", ("init",))
    try:
        raise OSError("boom")
    except OSError:
        opbeat_agent.capture_exception()
    assert [e["message"] for e in recording.events] == ["after init", "OSError: boom"]


def test_card_numbers_in_messages_are_masked(client, recording):
    client.capture_message("charge 4111 1111 1111 1111 declined; order 1234567890123")
    assert recording.events[0]["message"] == "charge ******** declined; order 1234567890123"


def test_unicode_and_odd_values_encode(client, recording):
    from opbeat_agent.transport import event_encode

    def fail():
        text = "héllo ✓ \udcff"  # noqa: F841 - a lone surrogate, as os.fsdecode can produce
        data = {1: b"\x00\xff", (1, 2): float("nan")}  # noqa: F841
        raise ValueError("ünïcode")

    try:
        fail()
    except ValueError:
        client.capture_exception()
    body = event_encode(recording.events[0])
    import gzip

    decoded = json.loads(gzip.decompress(body))
    assert decoded["exception"]["value"] == "ünïcode"
    assert decoded["stacktrace"]["frames"][-1]["vars"]["data"] == {"1": "b'\\x00\\xff'", "(1, 2)": "nan"}


@pytest.mark.parametrize("transport", ["opbeat_agent.transport.MemoryTransport", MemoryTransport])
def test_transport_by_dotted_path_or_class(transport):
    client = Client(**IDS, transport=transport)
    client.capture_message("hello")
    assert isinstance(client.transport, MemoryTransport)
    assert client.transport.events[0]["message"] == "hello"


def test_capture_exception_from_a_thread_without_a_scope(client, recording):
    import threading

    def work():
        try:
            raise TimeoutError("upstream")
        except TimeoutError:
            client.capture_exception()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert recording.events[0]["exception"]["type"] == "TimeoutError"
    assert "http" not in recording.events[0]
    assert sys.exc_info() == (None, None, None)
