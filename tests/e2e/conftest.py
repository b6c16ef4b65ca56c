"""Fixtures of the end-to-end tests: private state on the real servers, and the browser."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from . import stack

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


@pytest.fixture
def e2e_database_url(postgres_url: str) -> Iterator[str]:
    """A database of this test's own on the shared PostgreSQL server, dropped afterwards."""
    url = stack.postgres_database_create(postgres_url)
    yield url
    stack.postgres_database_drop(url)


@pytest.fixture
def e2e_broker_url(rabbitmq_url: str) -> Iterator[str]:
    """A fresh RabbitMQ vhost (or, without rabbitmqctl, the given one with our queues purged)."""
    url, vhost = stack.rabbitmq_vhost_create(rabbitmq_url)
    yield url
    stack.rabbitmq_vhost_delete(vhost)


@pytest.fixture
def chromium() -> str:
    if not Path(stack.CHROMIUM).exists():
        message = f"{stack.CHROMIUM} is missing (Debian package chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return stack.CHROMIUM


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path
