"""The logging handler: log calls become errors bodies, grouped by their template."""

from __future__ import annotations

import logging

import pytest

import opbeat_agent
from opbeat_agent import OpbeatHandler


@pytest.fixture
def shop_logger(client):
    logger = logging.getLogger("shop.payments")
    handler = OpbeatHandler(client, level=logging.WARNING)
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)


def test_a_warning_becomes_a_param_message(shop_logger, recording):
    shop_logger.warning("Payment %s failed for user %s", "p-123", "alice", extra={"gateway": "x"})
    [event] = recording.events
    assert event["param_message"] == {"message": "Payment %s failed for user %s", "params": ["p-123", "alice"]}
    assert event["message"] == "Payment p-123 failed for user alice"
    assert (event["level"], event["logger"]) == ("warning", "shop.payments")
    assert event["extra"]["gateway"] == "x"
    assert event["extra"]["funcName"] == "test_a_warning_becomes_a_param_message"


def test_below_the_handler_level_nothing_is_sent(shop_logger, recording):
    shop_logger.info("fine")
    assert recording.events == []


def test_logger_exception_sends_the_exception(shop_logger, recording):
    try:
        {}["missing"]
    except KeyError:
        shop_logger.exception("lookup failed for %s", "missing")
    [event] = recording.events
    assert event["exception"]["type"] == "KeyError"
    assert event["extra"]["log_message"] == "lookup failed for missing"
    assert event["stacktrace"]["frames"][-1]["function"] == "test_logger_exception_sends_the_exception"


def test_stack_on_request(shop_logger, recording):
    shop_logger.error("odd state", extra={"stack": True})
    assert recording.events[0]["stacktrace"]["frames"][-1]["function"] == "test_stack_on_request"


def test_the_agents_own_log_lines_are_never_sent(client, recording):
    root = logging.getLogger()
    handler = OpbeatHandler(client)
    root.addHandler(handler)
    try:
        logging.getLogger("opbeat_agent.transport").error("intake unreachable")
        logging.getLogger("app").error("real problem")
    finally:
        root.removeHandler(handler)
    assert [e["message"] for e in recording.events] == ["real problem"]


def test_without_a_client_it_uses_the_global_one(recording):
    from .conftest import IDS

    logger = logging.getLogger("global.user")
    handler = OpbeatHandler()
    logger.addHandler(handler)
    try:
        logger.error("before init")
        opbeat_agent.init(**IDS, transport=recording)
        logger.error("after init")
    finally:
        logger.removeHandler(handler)
    assert [e["message"] for e in recording.events] == ["after init"]
