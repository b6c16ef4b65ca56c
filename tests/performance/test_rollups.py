"""The worker's rollups: sums and sketches merge across bodies, a redelivered message adds
nothing, names past the cap go to `_other`, and pruning keeps the coarse rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from processing.models import TransactionName, TransactionRollup, TransactionTrace
from processing.rollups import rollups_prune, transactions_digest
from processing.sketches import Sketch

pytestmark = pytest.mark.django_db

MINUTE = int(datetime(2026, 11, 26, 0, 40, tzinfo=timezone.utc).timestamp())


def body(name: str, durations: list[float], *, minute: str = "2026-11-26T00:40:00Z", result: int = 200) -> dict:
    return {"transactions": [{"transaction": name, "result": result, "timestamp": minute, "durations": durations}], "traces": []}


def rollup(app, name: str, resolution: int) -> TransactionRollup:
    return TransactionRollup.objects.get(app=app, name__name=name, resolution=resolution)


def test_two_bodies_of_the_same_minute_merge(perf):
    assert perf.post_original(body("GET /a", [10.0, 20.0])).status_code == 202
    assert perf.post_original(body("GET /a", [30.0], result=503)).status_code == 202
    perf.work()
    for resolution in (60, 3600, 86400):
        row = rollup(perf.app, "GET /a", resolution)
        assert (row.count, row.errors, row.sum_ms, row.min_ms, row.max_ms) == (3, 1, 60.0, 10.0, 30.0)
        sketch = Sketch()
        sketch.add_encoded(row.sketch)
        assert sketch.total == 3
    total = rollup(perf.app, TransactionName.TOTAL, 60)
    assert total.count == 3


def test_redelivery_adds_nothing(perf):
    assert perf.post_original(body("GET /a", [10.0, 20.0])).status_code == 202
    result, envelopes = perf.work()
    assert result.rolled_up == 1
    again = transactions_digest(envelopes=envelopes)
    assert again.duplicates == 1 and again.rolled_up == 0
    assert rollup(perf.app, "GET /a", 60).count == 2


def test_names_past_the_cap_go_to_other_and_the_page_says_so(perf, settings):
    settings.OPBEAT_LIMITS = {**settings.OPBEAT_LIMITS, "transaction_names_per_app": 2}
    for name in ("GET /a", "GET /b", "GET /c", "GET /d"):
        assert perf.post_original(body(name, [10.0])).status_code == 202
    perf.work()
    names = set(TransactionName.objects.filter(app=perf.app).values_list("name", flat=True))
    assert names == {"GET /a", "GET /b", TransactionName.OTHER, TransactionName.TOTAL}
    assert rollup(perf.app, TransactionName.OTHER, 60).count == 2
    html = perf.page("performance", **{"from": "2026-11-26T00:00", "to": "2026-11-26T02:00"})
    assert "reached the limit of 2 transaction names" in html


def test_original_traces_become_a_waterfall_and_a_breakdown(perf):
    from tests.performance.conftest import FIXTURES

    path = FIXTURES / "opbeat361-patched_py311_django5219_01_POST_transactions.zlib"
    assert perf.post(path.read_bytes()).status_code == 202
    perf.work()
    trace = TransactionTrace.objects.get(app=perf.app, name__name="GET bench.views.work")
    assert round(trace.duration_ms, 3) == 41.768
    assert [span["signature"] for span in trace.spans][:2] == ["sqlite3.dbapi2.connect", "SELECT FROM users"]
    assert any(span["sql"].startswith('SELECT "orders"') for span in trace.spans)
    row = rollup(perf.app, "GET bench.views.work", 60)
    assert set(row.span_ms) == {"app", "db.sqlite.connect", "db.sqlite.sql", "template.django"}
    assert abs(sum(row.span_ms.values()) - row.span_base_ms) < 0.5


def test_prune_drops_old_minutes_and_keeps_days(perf):
    assert perf.post_original(body("GET /a", [10.0])).status_code == 202
    perf.work()
    later = datetime.fromtimestamp(MINUTE, tz=timezone.utc) + timedelta(days=3)
    rollups_prune(now=later)
    resolutions = set(TransactionRollup.objects.filter(app=perf.app).values_list("resolution", flat=True))
    assert resolutions == {3600, 86400}


def test_untrusted_envelopes_are_skipped_or_cleaned_alone(perf):
    assert perf.post_original(body("GET /a", [10.0])).status_code == 202
    [good] = perf.broker.envelopes()
    broken = {**good, "event_id": "f" * 32, "data": {"groups": [{"transaction": "GET /b", "count": "many"}]}}
    nul = {
        **good,
        "event_id": "e" * 32,
        "data": {**good["data"], "groups": [], "traces": [{
            "id": "t1", "transaction": "GET /nul", "timestamp": MINUTE + 5, "duration": 5.0,
            "spans": [{"id": 1, "parent": 0, "signature": "SELECT \x00", "kind": "db", "start": 0, "duration": 1, "sql": "x\x00y"}],
        }]},
    }  # fmt: skip
    result = transactions_digest(envelopes=[broken, good, nul, "not even a dict"])
    assert (result.rolled_up, result.skipped) == (2, 2)
    assert rollup(perf.app, "GET /a", 60).count == 1
    [trace] = TransactionTrace.objects.filter(app=perf.app, name__name="GET /nul")
    assert trace.spans[0]["signature"] == "SELECT " and trace.spans[0]["sql"] == "xy"


def test_an_envelope_the_database_refuses_costs_only_itself(perf, monkeypatch):
    import processing.rollups as rollups

    for name in ("GET /a", "GET /poison"):
        assert perf.post_original(body(name, [10.0])).status_code == 202
    envelopes = perf.broker.envelopes()
    real = rollups._rollups_write

    def refusing(deltas):
        # Stands for a row the database refuses (odd data, a bug): raised inside the transaction.
        if any(TransactionName.objects.filter(pk=key[1], name="GET /poison").exists() for key in deltas):
            raise ValueError("refused")
        return real(deltas)

    monkeypatch.setattr(rollups, "_rollups_write", refusing)
    result = transactions_digest(envelopes=envelopes)
    assert (result.rolled_up, result.skipped) == (1, 1)
    assert rollup(perf.app, "GET /a", 60).count == 1
    assert not TransactionRollup.objects.filter(app=perf.app, name__name="GET /poison").exists()


def test_prune_keeps_the_slowest_traces_of_each_hour(perf):
    start = datetime.now(tz=timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    traces = [
        {"id": f"t{i}", "transaction": "GET /a", "result": 200, "kind": "request",
         "timestamp": (start + timedelta(minutes=i)).isoformat(), "duration": 10.0 + i, "spans": []}
        for i in range(6)
    ]  # fmt: skip
    assert perf.post_agent({"histograms": [], "traces": traces}).status_code == 202
    perf.work()
    assert TransactionTrace.objects.filter(app=perf.app).count() == 6
    deleted = rollups_prune()
    assert deleted["traces_surplus"] == 3
    kept = sorted(TransactionTrace.objects.filter(app=perf.app).values_list("duration_ms", flat=True))
    assert kept == [13.0, 14.0, 15.0]
