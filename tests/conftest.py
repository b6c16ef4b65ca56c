"""Shared fixtures. Integration tests use the real PostgreSQL, RabbitMQ and Redis named by
DATABASE_URL, BROKER_URL and REDIS_URL; when one is missing its tests skip, unless
REQUIRE_SERVICES=1 (CI), where a missing server is a failure.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
OPBEAT_FIXTURES = FIXTURES / "opbeat"
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def service_url(name: str) -> str:
    """The URL of a real server for this test, or skip (fail under REQUIRE_SERVICES=1)."""
    env, default_port = {
        "postgres": ("DATABASE_URL", 5432),
        "rabbitmq": ("BROKER_URL", 5672),
        "redis": ("REDIS_URL", 6379),
    }[name]
    url = os.environ.get(env, "")
    scheme_ok = {
        "postgres": url.startswith(("postgres", "postgresql")),
        "rabbitmq": url.startswith(("amqp", "pyamqp")),
        "redis": url.startswith("redis"),
    }[name]
    if scheme_ok and _reachable(url, default_port):
        return url
    message = f"{name} is not configured or not reachable ({env}={url!r})"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> str:
    return service_url("postgres")


@pytest.fixture
def rabbitmq_url() -> str:
    return service_url("rabbitmq")


@pytest.fixture
def redis_url() -> str:
    return service_url("redis")


@pytest.fixture(autouse=True)
def throttle_counters_clear():
    """Each test starts with no login, reset or mail counted (accounts.throttle): counters live in
    the shared cache (Redis, or var/cache) and would otherwise carry over between tests and runs."""
    from django.core.cache import cache

    try:
        cache.clear()
    except Exception:  # noqa: BLE001 - an unreachable Redis is reported by the tests that need it
        pass
