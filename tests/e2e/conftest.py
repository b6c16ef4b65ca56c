"""Fixtures of the end-to-end tests: private state on the real servers, and the browser."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass
class ProductionStack:
    """gunicorn and a Celery worker on the real PostgreSQL, RabbitMQ and Redis, on a free port."""

    base_url: str
    env: dict[str, str]
    processes: list[stack.Process]

    def logs(self) -> str:
        return "\n".join(process.log_tail() for process in self.processes)

    def assert_running(self) -> None:
        for process in self.processes:
            process.assert_running()


@pytest.fixture
def production_stack(
    e2e_database_url: str, e2e_broker_url: str, redis_url: str, var_dir: Path, log_dir: Path
) -> Iterator[ProductionStack]:
    port = stack.port_free()
    base_url = f"http://127.0.0.1:{port}"
    env = stack.child_env(
        var_dir, DATABASE_URL=e2e_database_url, BROKER_URL=e2e_broker_url, REDIS_URL=redis_url, BASE_URL=base_url
    )
    # What a deploy does before starting the web processes.
    stack.manage("migrate", "--noinput", env=env)
    stack.manage("collectstatic", "--noinput", env=env)
    running = ProductionStack(base_url, env, [])
    try:
        running.processes.append(stack.gunicorn_start(port=port, env=env, log_dir=log_dir))
        running.processes.append(stack.worker_start(env=env, log_dir=log_dir))
        stack.wait_until(
            lambda: running.assert_running() or stack.port_listening(port),
            timeout=stack.START_TIMEOUT,
            what="gunicorn",
            on_timeout=running.logs,
        )
        yield running
        running.assert_running()
    finally:
        for process in running.processes:
            process.stop()
