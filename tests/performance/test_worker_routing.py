"""The worker's batch task takes errors and transactions from the same queue: each goes to its
own service, and a batch holding both stores both."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from processing.models import Event, TransactionRollup
from tests.processing.helpers import envelope, fixture_body

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_mixed_batch_stores_errors_and_rolls_up_transactions(perf):
    from processing.tasks import events_digest

    body = {"transactions": [{"transaction": "GET /a", "result": 200, "timestamp": "2026-11-26T00:40:00Z", "durations": [5.0, 7.0]}]}
    assert perf.post_original(body).status_code == 202
    [transactions] = perf.broker.envelopes()
    error = envelope(perf.app, fixture_body("opbeat361_py36_clientapi_00"))
    totals = events_digest.run([SimpleNamespace(args=[[error, transactions]], id="m1")])
    assert totals["stored"] == 1
    assert Event.objects.filter(app=perf.app).count() == 1
    minute = TransactionRollup.objects.get(app=perf.app, name__name="GET /a", resolution=60)
    assert (minute.count, minute.sum_ms) == (2, 12.0)
