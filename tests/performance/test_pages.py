"""Known durations in, the same numbers out on the pages: avg and p50/p95/p99 within 1 % of the
exact values, for the original agent's body and for opbeat-agent's sketch body, overview and
transaction page, with the waterfall showing SQL."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import pytest

from processing.models import TransactionName
from tests.performance.conftest import FIXTURES, exact_quantile, figure

pytestmark = pytest.mark.django_db


def durations(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    # Long-tailed like real endpoints: most around 40 ms, a few seconds long.
    return [round(20 + rng.lognormvariate(3.2, 0.9), 3) for _ in range(n)]


def minute_ago(minutes: int) -> str:
    moment = datetime.now(tz=timezone.utc) - timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:00Z")


def assert_close(shown: float, exact: float, what: str) -> None:
    assert abs(shown - exact) <= 0.01 * exact, f"{what}: page shows {shown}, exact {exact}"


def check_page(html: str, values: list[float]) -> None:
    assert figure(html, "total-count") == len(values)
    assert_close(figure(html, "total-avg"), sum(values) / len(values), "avg")
    for q, css in ((0.5, "total-p50"), (0.95, "total-p95"), (0.99, "total-p99")):
        assert_close(figure(html, css), exact_quantile(values, q), css)


def test_original_body_numbers_on_both_pages(perf):
    # Three minutes of one endpoint, sent as the original module does (every duration listed).
    minutes = [durations(seed, 400) for seed in (1, 2, 3)]
    for offset, values in enumerate(minutes, start=2):
        body = {"transactions": [{"transaction": "GET /orders", "result": 200, "timestamp": minute_ago(offset), "durations": values}], "traces": []}
        assert perf.post_original(body).status_code == 202
    result, _ = perf.work()
    assert result.transactions == 1200
    everything = [value for values in minutes for value in values]
    overview = perf.page("performance", range="1h")
    check_page(overview, everything)
    name = TransactionName.objects.get(app=perf.app, name="GET /orders")
    assert f'/performance/{name.id}/' in overview
    for range_key in ("1h", "24h", "7d", "30d"):
        check_page(perf.page("transaction_detail", name.id, range=range_key), everything)


def test_agent_sketch_bodies_from_several_processes_merge_exactly(perf):
    from opbeat_agent.sketch import DurationSketch

    sent = []
    for process in range(3):
        values = durations(10 + process, 500)
        sent += values
        sketch = DurationSketch.of(values)
        body = {
            "machine": {"hostname": f"web-{process}"}, "release": "2026.11.1",
            "histograms": [{
                "transaction": "GET /orders/<int:pk>/", "result": 200, "kind": "request", "timestamp": minute_ago(3),
                "count": sketch.count, "sum": sketch.sum, "min": sketch.min, "max": sketch.max, "sketch": sketch.to_dict(),
            }],
            "traces": [{
                "id": f"{process:032x}", "transaction": "GET /orders/<int:pk>/", "result": 200, "kind": "request",
                "timestamp": minute_ago(3).replace(":00Z", ":41.675Z"), "duration": max(values),
                "spans": [
                    {"id": 1, "parent": 0, "signature": "SELECT FROM orders", "kind": "db.postgresql.sql", "start": 0.5,
                     "duration": 8.0, "extra": {"sql": 'SELECT "orders"."id" FROM "orders" WHERE "orders"."id" = %s'}},
                    {"id": 2, "parent": 0, "signature": "render order.html", "kind": "template.django", "start": 9.0, "duration": 3.0},
                    {"id": 3, "parent": 2, "signature": "<script>alert(1)</script>", "kind": "cache.redis", "start": 9.5, "duration": 1.0},
                    {"id": 4, "parent": 0, "signature": "GET api.example.com", "kind": "ext.http.requests", "start": 13.0,
                     "duration": 2.0, "extra": {"url": "https://api.example.com/v1/rates"}},
                ],
            }],
        }  # fmt: skip
        assert perf.post_agent(body).status_code == 202
    perf.work()
    check_page(perf.page("performance", range="24h"), sent)
    name = TransactionName.objects.get(app=perf.app, name="GET /orders/<int:pk>/")
    html = perf.page("transaction_detail", name.id, range="1h")
    check_page(html, sent)
    # The slowest trace is shown with its spans, SQL and nesting; client text is escaped.
    assert f"{max(sent):.2f} ms" in html
    assert "SELECT &quot;orders&quot;.&quot;id&quot;" in html
    assert "https://api.example.com/v1/rates" in html  # an HTTP span shows the URL it called
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert re.search(r"db\.postgresql\.sql</span>\s*</td>\s*<td class=\"num\">8\.00 ms", html) or "db.postgresql.sql" in html


def test_captured_bodies_show_their_numbers(perf):
    import json

    path = FIXTURES / "opbeat361_py36_django3114_01_POST_transactions.zlib"
    sent = json.loads(path.with_suffix(".json").read_text())
    assert perf.post(path.read_bytes()).status_code == 202
    perf.work()
    values = [d for t in sent["transactions"] if t["transaction"] == "GET bench.views.work" for d in t["durations"]]
    name = TransactionName.objects.get(app=perf.app, name="GET bench.views.work")
    start = datetime.fromisoformat(sent["transactions"][0]["timestamp"].replace("Z", "+00:00"))
    html = perf.page("transaction_detail", name.id, **{"from": (start - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"), "to": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")})
    check_page(html, values)
    assert "template.django" in html and "items.html" in html


def test_overview_table_sorts_by_impact(perf):
    body = {"transactions": [
        {"transaction": "GET /rare-slow", "result": 200, "timestamp": minute_ago(2), "durations": [500.0]},
        {"transaction": "GET /hot", "result": 200, "timestamp": minute_ago(2), "durations": [50.0] * 40},
        {"transaction": "GET /broken", "result": 500, "timestamp": minute_ago(2), "durations": [5.0] * 4},
    ], "traces": []}  # fmt: skip
    assert perf.post_original(body).status_code == 202
    perf.work()
    html = perf.page("performance", range="1h")
    order = [m for m in re.findall(r">(GET /[a-z-]+)</a>", html)]
    assert order == ["GET /hot", "GET /rare-slow", "GET /broken"]
    by_p99 = re.findall(r">(GET /[a-z-]+)</a>", perf.page("performance", range="1h", sort="p99"))
    assert by_p99[0] == "GET /rare-slow"
    assert "100.0 %" in html  # /broken: every request a 5xx
    assert "reached the limit" not in html


def test_empty_app_and_bad_custom_range(perf):
    html = perf.page("performance", **{"from": "yesterday", "to": "now"})
    assert "No transactions in this range" in html
    assert "needs `from` before `to`" in html


def test_release_markers_on_the_charts(perf):
    from processing.models import Release

    body = {"transactions": [{"transaction": "GET /a", "result": 200, "timestamp": minute_ago(5), "durations": [30.0, 40.0]}], "traces": []}
    assert perf.post_original(body).status_code == 202
    perf.work()
    Release.objects.create(app=perf.app, version="2026.11.<b>1</b>", deployed_at=datetime.now(tz=timezone.utc) - timedelta(minutes=10), deploy_order=1)
    Release.objects.create(app=perf.app, version="2026.10.9", deployed_at=datetime.now(tz=timezone.utc) - timedelta(days=3), deploy_order=0)
    html = perf.page("performance", range="1h")
    assert html.count('class="release-marker"') == 2  # one per chart, the old release is out of range
    assert "Release 2026.11.&lt;b&gt;1&lt;/b&gt;" in html and "2026.10.9" not in html
    assert "2026.10.9" in perf.page("performance", range="7d")


def test_a_single_busy_bucket_is_drawn(perf):
    # Over 30 days one point per day: a minute of traffic fills one bucket, and a line through a
    # single point draws nothing, so the response-time chart must show each series as a dot.
    body = {"transactions": [{"transaction": "GET /once", "result": 200, "timestamp": minute_ago(3), "durations": [12.0, 30.0]}], "traces": []}
    assert perf.post_original(body).status_code == 202
    perf.work()
    html = perf.page("performance", range="30d")
    for series in ("avg", "p50", "p95", "p99"):
        assert re.search(rf'<circle class="dot {series}" cx="[\d.]+" cy="[\d.]+" r="3">', html), series


def test_time_by_kind_counts_every_request_not_only_the_sampled_trace(perf):
    # 100 requests of 10 ms: 6 ms of SQL and 4 ms of own code each, as the agent totals them in
    # span_ms. The one sampled trace (the slowest) spent its time in a template: the breakdown
    # must follow the totals, not that trace.
    from opbeat_agent.sketch import DurationSketch

    sketch = DurationSketch.of([10.0] * 100)
    body = {
        "histograms": [{
            "transaction": "GET /report", "result": 200, "kind": "request", "timestamp": minute_ago(3),
            "count": 100, "sum": 1000.0, "min": 10.0, "max": 10.0, "sketch": sketch.to_dict(),
            "span_ms": {"base": 1000.0, "kinds": {"db.postgresql.sql": 600.0, "app": 400.0}},
        }],
        "traces": [{
            "id": "1" * 32, "transaction": "GET /report", "result": 200, "kind": "request",
            "timestamp": minute_ago(3).replace(":00Z", ":10.000Z"), "duration": 10.0,
            "spans": [{"id": 1, "parent": 0, "signature": "report.html", "kind": "template.django", "start": 0.5, "duration": 9.0}],
        }],
    }  # fmt: skip
    assert perf.post_agent(body).status_code == 202
    perf.work()
    name = TransactionName.objects.get(app=perf.app, name="GET /report")
    html = perf.page("transaction_detail", name.id, range="1h")
    table = html[html.index('class="compact span-kinds"'):]
    table = table[: table.index("</table>")]
    rows = dict(re.findall(r"</svg> ([\w.]+)</td><td class=\"num\">([\d.]+) ms", table))
    assert rows == {"db.postgresql.sql": "6.00", "app": "4.00"}
