"""Fixtures for the example apps' tests (the stand-in intake is shared with tests/agent)."""

from __future__ import annotations

import sys

import pytest

from tests.agent.support import IntakeDouble


@pytest.fixture
def intake():
    double = IntakeDouble().start()
    yield double
    double.stop()


@pytest.fixture(autouse=True)
def _no_instrumentation_left():
    yield
    if "opbeat_agent.instrumentation" in sys.modules:
        sys.modules["opbeat_agent.instrumentation"].uninstrument_all()
