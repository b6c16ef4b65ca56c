"""Celery tasks as background transactions, and failing tasks captured with their arguments.
Tasks run through Celery's own tracer (``apply``), which sends the same signals a worker does."""

from __future__ import annotations

import pytest

celery = pytest.importorskip("celery")

from opbeat_agent import Client  # noqa: E402
from opbeat_agent.integrations.celery import register, unregister  # noqa: E402

from .conftest import IDS  # noqa: E402


@pytest.fixture
def app_and_client(recording):
    app = celery.Celery("shop", broker="memory://", backend="cache+memory://")
    app.conf.task_store_eager_result = False

    @app.task(name="shop.charge")
    def charge(order_id, card_number=None, api_key=None):
        if order_id < 0:
            raise ValueError(f"no order {order_id}")
        return order_id * 2

    client = Client(**IDS, transport=recording)
    register(client)
    yield charge, client
    unregister()
    client.close(timeout=1)


def test_tasks_are_background_transactions(app_and_client, recording):
    charge, client = app_and_client
    assert charge.apply(args=(21,)).get() == 42
    assert charge.apply(args=(4,)).get() == 8
    charge.apply(args=(-1,))
    assert client.flush(10)
    counts: dict = {}
    for body in recording.transactions:
        for h in body["histograms"]:
            counts[(h["transaction"], h["result"], h["kind"])] = counts.get((h["transaction"], h["result"], h["kind"]), 0) + h["count"]
    assert counts == {("shop.charge", "success", "task"): 2, ("shop.charge", "failure", "task"): 1}


def test_a_failing_task_is_captured_with_its_arguments_scrubbed(app_and_client, recording):
    charge, client = app_and_client
    result = charge.apply(args=(-7,), kwargs={"card_number": "4111 1111 1111 1111", "api_key": "k-1"})
    assert result.failed()
    [event] = recording.events
    assert event["exception"] == {"type": "ValueError", "value": "no order -7", "module": "builtins"}
    assert event["culprit"] == "tests.agent.test_celery.charge"
    assert event["tags"] == {"celery_task": "shop.charge"}
    extra = event["extra"]
    assert extra["task"] == "shop.charge" and extra["task_id"] == result.id
    assert extra["args"] == [-7]
    assert extra["kwargs"] == {"card_number": "********", "api_key": "********"}
