"""Percentiles mean what users read: p99 = x says 99 % of the requests took at most x (the
nearest-rank rule, the value at rank ceil(q * n) of the n sorted durations). Up to
``EXACT_MAX`` durations per row (or merged on a page) the figures are exact; beyond, within 1 %;
and always min <= p50 <= p95 <= p99 <= max.

The expected values are computed here from the raw durations with fractions, not with the
server's rank function."""

from __future__ import annotations

import math
import random
import re
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from dashboards.performance import Stats, names_table, series, time_range_parse
from processing.models import TransactionName
from processing.sketches import EXACT_MAX, Sketch, sketch_encode
from tests.performance.conftest import figure

QS = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = math.ceil(Fraction(str(q)) * len(ordered))
    return ordered[max(rank, 1) - 1]


def minute_stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:00Z")


def recent_minutes() -> tuple[datetime, datetime]:
    now = datetime.now(tz=timezone.utc).replace(second=0, microsecond=0)
    return now - timedelta(minutes=4), now - timedelta(minutes=3)


def series_of(n: int) -> list[float]:
    """n durations as clients send them (ms, three decimals), long-tailed, some with ties and a
    zero."""
    rng = random.Random(n)
    values = [round(rng.lognormvariate(3.2, 1.0), 3) for _ in range(n)]
    if n % 7 == 0:
        values[: n // 3] = [values[0]] * (n // 3)
    if n % 11 == 0:
        values[-1] = 0.0
    return values


def assert_figures(*, shown: dict[str, float | None], values: list[float], what: str) -> None:
    low, high = min(values), max(values)
    assert shown["min"] == low and shown["max"] == high, what
    assert low <= shown["p50"] <= shown["p95"] <= shown["p99"] <= high, (what, shown)
    for q, key in QS:
        exact = nearest_rank(values, q)
        if len(values) <= EXACT_MAX:
            assert shown[key] == exact, (what, key, shown[key], exact)
        else:
            # 1 %, and a float's rounding of the bin edges.
            assert abs(shown[key] - exact) <= 0.01 * exact * (1 + 1e-9), (what, key, shown[key], exact)


def stats_figures(stats: Stats) -> dict[str, float | None]:
    return {"p50": stats.p50, "p95": stats.p95, "p99": stats.p99, "min": stats.min, "max": stats.max}


# --- The reported case ---------------------------------------------------------------------------


def test_two_requests_show_their_own_durations(perf):
    """22.68 ms and 52.65 ms: p50 is the first, p95 and p99 the second (was 22.875 for all three)."""
    first, _ = recent_minutes()
    body = {"transactions": [{"transaction": "GET /pair", "result": 200, "timestamp": minute_stamp(first),
                              "durations": [22.68, 52.65]}], "traces": []}  # fmt: skip
    assert perf.post_original(body).status_code == 202
    perf.work()
    name = TransactionName.objects.get(app=perf.app, name="GET /pair")
    for range_key in ("1h", "24h", "7d", "30d"):
        html = perf.page("transaction_detail", name.id, range=range_key)
        assert figure(html, "total-count") == 2
        assert abs(figure(html, "total-avg") - 37.665) <= 0.0006
        assert (figure(html, "total-p50"), figure(html, "total-p95"), figure(html, "total-p99")) == (22.68, 52.65, 52.65)
    overview = perf.page("performance", range="1h")
    assert re.search(r'<td class="num p95">52\.[67]</td>\s*<td class="num p99">52\.[67]</td>', overview)
    for key, exact in (("p50", 22.68), ("p95", 52.65), ("p99", 52.65)):
        assert abs(figure(overview, f"total-{key}") - exact) <= 0.05 + 1e-9, key


def test_agent_sends_the_durations_of_a_small_group_and_the_page_shows_them(perf):
    from opbeat_agent.sketch import DurationSketch

    first, _ = recent_minutes()
    sketch = DurationSketch.of([22.68, 52.65])
    data = sketch.to_dict()
    assert sorted(data["values"]) == [22.68, 52.65] and data["bins"]  # bins still sent: older servers read them
    body = {"histograms": [{"transaction": "GET /pair", "result": 200, "kind": "request", "timestamp": minute_stamp(first),
                            "count": 2, "sum": 75.33, "min": 22.68, "max": 52.65, "sketch": data}]}  # fmt: skip
    assert perf.post_agent(body).status_code == 202
    perf.work()
    name = TransactionName.objects.get(app=perf.app, name="GET /pair")
    html = perf.page("transaction_detail", name.id, range="1h")
    assert (figure(html, "total-p50"), figure(html, "total-p95"), figure(html, "total-p99")) == (22.68, 52.65, 52.65)
    assert (sketch.quantile(0.5), sketch.quantile(0.99)) == (22.68, 52.65)


def test_a_large_group_is_sent_as_bins_only():
    from opbeat_agent.sketch import DurationSketch

    assert "values" in DurationSketch.of([1.0] * EXACT_MAX).to_dict()
    assert "values" not in DurationSketch.of([1.0] * (EXACT_MAX + 1)).to_dict()


@pytest.mark.parametrize(
    "values, status, words",
    [([22.68], 400, "lists 1 values but count is 2"), ([22.68, 60.0], 400, "outside min..max"), ([22.68, 52.65], 202, "")],
)
def test_intake_checks_the_durations_against_count_min_and_max(perf, values, status, words):
    first, _ = recent_minutes()
    body = {"histograms": [{"transaction": "GET /pair", "timestamp": minute_stamp(first), "count": 2, "sum": 75.33,
                            "min": 22.68, "max": 52.65,
                            "sketch": {"bins": [[157, 1], [199, 1]], "values": values}}]}  # fmt: skip
    response = perf.post_agent(body)
    assert response.status_code == status, response.content
    assert words in response.content.decode()


# --- n = 1 .. 1000 through the intake, the worker and the page's reads ------------------------------


def test_every_n_up_to_a_thousand(perf, settings):
    """One name per n (n durations, half in each of two minutes, posted as two bodies rolled up
    separately so the worker merges a stored row with new durations); the figures read as the
    pages read them (1 h: minute rows merged on the page; 24 h: hour rows merged by the worker),
    and a few through the page's HTML."""
    settings.OPBEAT_LIMITS = {**settings.OPBEAT_LIMITS, "transaction_names_per_app": 2000}
    sent = {n: series_of(n) for n in range(1, 1001)}
    first, second = recent_minutes()
    for minute, part in ((first, 0), (second, 1)):
        transactions = []
        for n, values in sent.items():
            half = values[: n // 2] if part == 0 else values[n // 2 :]
            if half:
                transactions.append({"transaction": f"GET /n/{n}", "result": 200, "timestamp": minute_stamp(minute),
                                     "durations": half})  # fmt: skip
        assert perf.post_original({"transactions": transactions, "traces": []}).status_code == 202
        _result, envelopes = perf.work()
        # The queue carries the durations of small groups only; larger ones as bins.
        for group in envelopes[0]["data"]["groups"]:
            assert ("values" in group) == (group["count"] <= EXACT_MAX), group["count"]

    names = {name.name: name for name in TransactionName.objects.filter(app=perf.app)}
    for range_key in ("1h", "24h"):
        time_range, _ = time_range_parse({"range": range_key})
        rows, totals, _capped = names_table(app=perf.app, time_range=time_range)
        shown = {row.name.name: row.stats for row in rows}
        assert len(shown) == 1000
        for n, values in sent.items():
            stats = shown[f"GET /n/{n}"]
            assert stats.count == n
            assert_figures(shown=stats_figures(stats), values=values, what=f"{range_key} table n={n}")
        everything = [value for values in sent.values() for value in values]
        assert_figures(shown=stats_figures(totals), values=everything, what=f"{range_key} totals")

    for n in (1, 2, 3, 7, 100, EXACT_MAX, EXACT_MAX + 1, 1000):
        name = names[f"GET /n/{n}"]
        _points, overall = series(app=perf.app, name=name, time_range=time_range_parse({"range": "1h"})[0])
        assert_figures(shown=stats_figures(overall), values=sent[n], what=f"series n={n}")
        html = perf.page("transaction_detail", name.id, range="1h")
        assert figure(html, "total-count") == n
        shown = {key: figure(html, f"total-{key}") for _, key in QS}
        # The page prints three decimals: the durations' own precision.
        shown |= {"min": min(sent[n]), "max": max(sent[n])}
        assert_figures(shown=shown, values=sent[n], what=f"html n={n}")


# --- Any series, any split into rows ---------------------------------------------------------------

durations = st.floats(min_value=0, max_value=3_600_000, allow_nan=False).map(lambda value: round(value, 3))


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(durations, min_size=1, max_size=700),
    cuts=st.lists(st.integers(min_value=1, max_value=700), max_size=6),
)
def test_any_series_split_into_rows(values, cuts):
    """Rows encoded as the worker writes them, merged as the pages merge them."""
    bounds = sorted({0, len(values), *(cut for cut in cuts if cut < len(values))})
    stats = Stats()
    for start, end in zip(bounds, bounds[1:]):
        part = values[start:end]
        row = Sketch()
        row.add_values(part)
        stats.add(len(part), 0, sum(part), min(part), max(part), row.encode())
    stats.finish()
    assert_figures(shown=stats_figures(stats), values=values, what="merged rows")


@hypothesis_settings(max_examples=200, deadline=None)
@given(values=st.lists(durations, min_size=1, max_size=300), binned=st.lists(durations, min_size=1, max_size=50))
def test_exact_and_binned_rows_merge_within_one_percent(values, binned):
    """A row the agent sent as bins only (an older agent) merged with exact rows: binned, within
    1 %, and still inside min..max."""
    stats = Stats()
    row = Sketch()
    row.add_values(values)
    stats.add(len(values), 0, sum(values), min(values), max(values), row.encode())
    bins: dict[int, int] = {}
    zero = 0
    for value in binned:
        if value < 0.001:
            zero += 1
        else:
            key = math.ceil(math.log(value) / math.log(1.01 / 0.99))
            bins[key] = bins.get(key, 0) + 1
    stats.add(len(binned), 0, sum(binned), min(binned), max(binned), sketch_encode(bins=bins, zero_count=zero))
    stats.finish()
    everything = values + binned
    shown = stats_figures(stats)
    assert min(everything) <= shown["p50"] <= shown["p95"] <= shown["p99"] <= max(everything)
    for q, key in QS:
        exact = nearest_rank(everything, q)
        assert abs(shown[key] - exact) <= 0.01 * exact * (1 + 1e-9), (key, shown[key], exact)
