"""Fixtures for the agent's tests: a client whose events land in a MemoryTransport (the
recording transport), and a stand-in intake served over real HTTP for the transport's tests."""

from __future__ import annotations

import sys

import pytest

import opbeat_agent
from opbeat_agent import Client, MemoryTransport

from .support import IntakeDouble

# Auto-instrumentation patches libraries process-wide: tests opt in to it explicitly
# (test_instrumentation.py), so the rest of the suite runs against unpatched libraries.
IDS = {"organization_id": "org1", "app_id": "app1", "secret_token": "sekrit-token", "instrument": False}


@pytest.fixture(autouse=True)
def _no_global_client():
    # Each test starts without a global client and leaves none behind, and no library patched.
    opbeat_agent.set_client(None)
    yield
    opbeat_agent.set_client(None)
    if "opbeat_agent.instrumentation" in sys.modules:
        sys.modules["opbeat_agent.instrumentation"].uninstrument_all()


@pytest.fixture
def recording() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def client(recording: MemoryTransport) -> Client:
    # include_paths: our tests live outside site-packages, so they are in-app anyway; naming them
    # keeps the test independent of where the checkout is.
    return Client(**IDS, transport=recording, include_paths=["tests"])


@pytest.fixture
def intake():
    double = IntakeDouble().start()
    yield double
    double.stop()


@pytest.fixture
def http_client_factory():
    """Clients with the real HTTP transport; closed at the end of the test so no thread outlives it."""
    made: list[Client] = []

    def make(url: str, **options) -> Client:
        options = {"retry_backoff_base": 0.05, "retry_backoff_max": 0.2, "timeout": 10.0, **options}
        client = Client(**IDS, servers=[url], **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=0)
