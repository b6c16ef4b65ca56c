"""Fixtures for the example apps' tests (the stand-in intake is shared with tests/agent)."""

from __future__ import annotations

import pytest

from tests.agent.support import IntakeDouble


@pytest.fixture
def intake():
    double = IntakeDouble().start()
    yield double
    double.stop()
