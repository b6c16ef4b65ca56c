"""A real Celery worker process rolls up what the intake published, through RabbitMQ into
PostgreSQL: the captured bodies of the original agent, posted twice over, show their numbers on
the page, and the errors posted alongside are stored by the same worker."""

from __future__ import annotations

import json

import pytest

from processing.models import Event, TransactionName, TransactionRollup
from tests.performance.conftest import TRANSACTION_FIXTURES, exact_quantile, figure
from tests.processing.helpers import ERROR_FIXTURES
from tests.processing.test_worker import relayed_worker_env, wait_for, worker_start, worker_stop  # noqa: F401

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_worker_rolls_up_published_transactions(perf, relayed_worker_env, tmp_path):
    _relay, env = relayed_worker_env
    log_path = tmp_path / "worker.log"
    worker = worker_start(env=env, log_path=log_path)
    try:
        path = next(p for p in TRANSACTION_FIXTURES if "py36_django3114" in p.name)
        sent = json.loads(path.with_suffix(".json").read_text())
        for _ in range(2):
            assert perf.post(path.read_bytes()).status_code == 202
        error = ERROR_FIXTURES[0].with_suffix(".zlib")
        url = f"/api/v1/organizations/{perf.organization.public_id}/apps/{perf.app.public_id}/errors/"
        assert perf.client.generic("POST", url, error.read_bytes(), HTTP_AUTHORIZATION=f"Bearer {perf.token}").status_code == 202

        def rolled() -> bool:
            total = TransactionRollup.objects.filter(app=perf.app, name__name=TransactionName.TOTAL, resolution=60)
            return sum(row.count for row in total) == 2 * sum(len(t["durations"]) for t in sent["transactions"])

        wait_for(rolled, seconds=60, what="both bodies rolled up")
        wait_for(lambda: Event.objects.filter(app=perf.app).count() == 1, seconds=30, what="the error stored")
    finally:
        code = worker_stop(worker)
    assert code == 0, log_path.read_text()[-3000:]

    values = 2 * [d for t in sent["transactions"] if t["transaction"] == "GET bench.views.work" for d in t["durations"]]
    name = TransactionName.objects.get(app=perf.app, name="GET bench.views.work")
    minute = sent["transactions"][0]["timestamp"][:16]
    html = perf.page("transaction_detail", name.id, **{"from": minute[:11] + "00:00", "to": minute[:11] + "23:59"})
    assert figure(html, "total-count") == len(values)
    for q, css in ((0.5, "total-p50"), (0.95, "total-p95"), (0.99, "total-p99")):
        exact = exact_quantile(values, q)
        assert abs(figure(html, css) - exact) <= 0.01 * exact
