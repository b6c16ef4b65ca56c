"""Figures that read right and charts with axes: the throughput a page shows is the count of the
requests sent over the minutes of the range up to now, per minute, or per hour below one a
minute, with three significant digits and its unit, at 1 h, 24 h, 7 d and 30 d; every chart has
labelled axes with tick values that match its marks; a series with a single value is a dot with
its value written beside it.

Transactions go through the real intake and the worker's rollup (``tests/performance``); the
expected figures are computed here from what was sent and the range rules, never read back."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from django.urls import reverse

from processing.models import ErrorMinute, Release, TransactionName
from tests.dashboards.rows import event_create, hourly_create, issue_create
from tests.performance.conftest import perf  # noqa: F401 - the fixture, used by name
from tests.performance.test_pages import durations, minute_ago
# The intake's autouse fixture (fresh token cache, quota and rejection counters per test) and the
# broker reader the performance fixture needs.
from tests.intake.conftest import broker, intake_state_clean  # noqa: F401

pytestmark = pytest.mark.django_db

MINUTE, HOUR, DAY = 60, 3600, 86400


def range_start(key: str, now: float) -> float:
    """Where each range starts (the page's rule: it ends with the current step, minute for 1 h,
    hour for 24 h and 7 d, day for 30 d)."""
    span, step = {"1h": (HOUR, MINUTE), "24h": (DAY, HOUR), "7d": (7 * DAY, HOUR), "30d": (30 * DAY, DAY)}[key]
    return now - now % step + step - span


def expected_rate(count: int, key: str, now: float) -> tuple[float, str]:
    per_minute = count / ((now - range_start(key, now)) / 60)
    return (per_minute * 60, "/h") if per_minute < 1 else (per_minute, "/min")


def assert_rate_shown(shown: str, count: int, key: str, before: float, after: float) -> None:
    """``shown`` ("15.1 /min") is the exact rate at some moment the page was being made, written
    with three significant digits."""
    value_text, unit = shown.split(" ")
    low, unit_low = expected_rate(count, key, after)
    high, unit_high = expected_rate(count, key, before)
    assert unit in (unit_low, unit_high), f"{key}: {shown} for {count} requests, expected {low:.4g}-{high:.4g} {unit_high}"
    digits = value_text.replace(",", "").replace(".", "").lstrip("0")
    assert len(digits) == 3 or float(value_text.replace(",", "")) >= 100, f"{key}: {shown} is not three significant digits"
    value = float(value_text.replace(",", ""))
    decimals = len(value_text.split(".")[1]) if "." in value_text else 0
    half_step = 0.5 * 10**-decimals
    assert low - half_step - 1e-12 <= value <= high + half_step + 1e-12, f"{key}: shows {shown}, exact {low:.5g}-{high:.5g} {unit}"


def rates_in_table(html: str) -> dict[str, str]:
    rows = re.findall(r'<td class="num rpm" title="[^"]*">([^<]+)</td>.*?<td class="title"><a href="[^"]+">([^<]+)</a>', html, re.S)
    return {name: rate for rate, name in rows}


def total_rate(html: str) -> str:
    return re.search(r'<dd class="total-rate">([^<]+)</dd>', html).group(1)


def test_throughput_reads_right_at_every_range(perf):  # noqa: F811
    busy = durations(1, 900)
    body = {"transactions": [
        {"transaction": "GET /busy", "result": 200, "timestamp": minute_ago(3), "durations": busy},
        {"transaction": "GET /rare", "result": 200, "timestamp": minute_ago(4), "durations": [12.0] * 5},
    ], "traces": []}  # fmt: skip
    assert perf.post_original(body).status_code == 202
    perf.work()
    units = set()
    for key in ("1h", "24h", "7d", "30d"):
        before = time.time()
        html = perf.page("performance", range=key)
        after = time.time()
        table = rates_in_table(html)
        assert set(table) == {"GET /busy", "GET /rare"}
        assert_rate_shown(table["GET /busy"], 900, key, before, after)
        assert_rate_shown(table["GET /rare"], 5, key, before, after)
        assert_rate_shown(total_rate(html), 905, key, before, after)
        units |= {rate.split(" ")[1] for rate in table.values()}
        name = TransactionName.objects.get(app=perf.app, name="GET /rare")
        before = time.time()
        detail = perf.page("transaction_detail", name.id, range=key)
        assert_rate_shown(total_rate(detail), 5, key, before, time.time())
    assert units == {"/min", "/h"}  # both units were needed, and shown


def svg_of(html: str, css_class: str, nth: int = 0) -> str:
    charts = re.findall(rf'<svg class="chart {css_class}[^"]*".*?</svg>', html, re.S)
    assert len(charts) > nth, f"no chart {css_class} #{nth}"
    return charts[nth]


def y_ticks(svg: str) -> dict[str, float]:
    return {label: float(y) for y, label in re.findall(r'<text class="tick y" x="[-\d.]+" y="([-\d.]+)"[^>]*>([^<]+)</text>', svg)}


def x_ticks(svg: str) -> list[str]:
    return re.findall(r'<text class="tick x"[^>]*>([^<]+)</text>', svg)


def axis_labels(svg: str) -> tuple[str, str]:
    y = re.search(r'<text class="axis-label y"[^>]*>([^<]+)</text>', svg).group(1)
    x = re.search(r'<text class="axis-label x"[^>]*>([^<]+)</text>', svg).group(1)
    return y, x


TIME_TICK = re.compile(r"^(\d\d:\d\d|[A-Z][a-z]{2} \d{1,2})$")


def test_every_chart_has_labelled_axes_with_units(perf):  # noqa: F811
    for offset in (3, 5, 8):
        body = {"transactions": [{"transaction": "GET /a", "result": 200, "timestamp": minute_ago(offset), "durations": durations(offset, 120)}], "traces": []}  # fmt: skip
        assert perf.post_original(body).status_code == 202
    perf.work()
    name = TransactionName.objects.get(app=perf.app, name="GET /a")
    for key in ("1h", "24h", "7d", "30d"):
        for html in (perf.page("performance", range=key), perf.page("transaction_detail", name.id, range=key)):
            throughput, latency = svg_of(html, "line-chart", 0), svg_of(html, "line-chart", 1)
            assert axis_labels(throughput) in (("requests per minute", "time (UTC)"), ("requests per hour", "time (UTC)"))
            assert axis_labels(latency) == ("response time", "time (UTC)")
            assert all(label.endswith(" ms") or label == "0 ms" for label in y_ticks(latency)), y_ticks(latency)
            for svg in (throughput, latency):
                assert len(y_ticks(svg)) >= 3 and len(x_ticks(svg)) >= 3, (key, x_ticks(svg))
                assert all(TIME_TICK.match(label) for label in x_ticks(svg)), x_ticks(svg)
    # The latency histogram: requests against durations; its top tick covers the tallest bar.
    html = perf.page("transaction_detail", name.id, range="1h")
    histogram = svg_of(html, "histogram")
    assert axis_labels(histogram) == ("requests", "duration (log scale)")
    assert all(label.endswith(" ms") or label.endswith(" s") for label in x_ticks(histogram))
    counts = [int(count) for count in re.findall(r"ms: (\d+)</title></rect>", histogram)]
    assert sum(counts) == 360
    top = max(float(label.replace(",", "")) for label in y_ticks(histogram))
    assert max(counts) <= top


def test_errors_chart_ticks_match_its_bars(member):
    now = datetime.now(tz=timezone.utc)
    issue = issue_create(app=member.app, event_count=15)
    hourly_create(issue=issue, counts={now: 12, now - timedelta(hours=5): 3})
    for html, css, label in (
        (member.client.get(member.url("issue_list")).content.decode(), "app-chart", "errors per hour"),
        (member.client.get(member.url("issue_detail", issue.id)).content.decode(), "issue-chart", "events per hour"),
    ):
        svg = svg_of(html, css)
        assert axis_labels(svg) == (label, "time (UTC)")
        ticks = y_ticks(svg)
        assert all(re.fullmatch(r"\d+", tick) for tick in ticks), ticks  # whole errors only
        values = sorted(int(tick) for tick in ticks)
        assert values[0] == 0 and values[-1] >= 12
        assert all(TIME_TICK.match(tick) for tick in x_ticks(svg)) and len(x_ticks(svg)) >= 3
        # A bar of 12 reaches where 12 is on the axis (read from two ticks' positions).
        bottom, top = ticks["0"], ticks[str(values[-1])]
        bar = re.search(r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"><title>[^<]*UTC: 12</title>', svg)
        assert bar, svg
        assert math.isclose(float(bar.group(1)), bottom - (bottom - top) * 12 / values[-1], abs_tol=0.02)
        assert math.isclose(float(bar.group(2)), (bottom - top) * 12 / values[-1], abs_tol=0.02)
    # The sparklines of the list stay bare: a table cell 20 px high, read for its shape.
    assert '<g class="axes">' not in svg_of(member.client.get(member.url("issue_list")).content.decode(), "sparkline")


def test_a_one_point_series_is_a_dot_with_its_value(perf):  # noqa: F811
    # Over 30 days one point per day: a minute of traffic is the only point of every series.
    sent = [12.0, 30.0, 48.0]
    body = {"transactions": [{"transaction": "GET /once", "result": 200, "timestamp": minute_ago(3), "durations": sent}], "traces": []}
    assert perf.post_original(body).status_code == 202
    perf.work()
    html = perf.page("performance", range="30d")
    latency = svg_of(html, "line-chart", 1)
    assert "<polyline" not in latency  # no line through a single point
    for series in ("avg", "p50", "p95", "p99"):
        dot = re.search(rf'<circle class="dot {series}" cx="([\d.]+)" cy="([\d.]+)" r="3">', latency)
        assert dot, series
        label = re.search(rf'<text class="value {series}" x="([\d.]+)" y="([\d.]+)"[^>]*>{series} ([\d.]+) ms</text>', latency)
        assert label, series
        assert label.group(1) == dot.group(1)  # beside its dot
    avg = re.search(r'<text class="value avg"[^>]*>avg ([\d.]+) ms</text>', latency).group(1)
    assert avg == "30.0"  # (12 + 30 + 48) / 3, three significant digits
    # The throughput line has a value in every bucket (zeros included): a line, not a lone dot.
    assert "<polyline" in svg_of(html, "line-chart", 0)


def test_release_error_rates_have_significant_digits(member):
    now = datetime.now(tz=timezone.utc)
    issue = issue_create(app=member.app, event_count=1)
    # As the digest keeps it: the event and its minute's count (the release figures read both).
    when = (now - timedelta(hours=5)).replace(second=0, microsecond=0)
    event_create(issue=issue, timestamp=when)
    ErrorMinute.objects.create(app=member.app, environment="", minute=when, count=1)
    Release.objects.create(app=member.app, version="1.0", deployed_at=now - timedelta(minutes=30), deploy_order=1)
    html = member.client.get(reverse("dashboards:release_list", args=[member.organization.public_id, member.app.public_id])).content.decode()
    # One error in the 24 hours before the deploy is 1/24 an hour, not "0.04"; none after it.
    assert '<td class="rates">0.0417 → 0</td>' in html


from hypothesis import given, settings as hypothesis_settings, strategies as st  # noqa: E402

from dashboards.charts import AXIS_PEAK_MAX, ticks_nice  # noqa: E402


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.booleans())
def test_axis_ticks_cover_any_peak(peak, integer):
    # A stored value can be anything a float holds (subnormals and 1e308 included): the axis
    # must still be 0 .. top, increasing, with top at or above the peak it has to show.
    top, values = ticks_nice(peak, integer=integer)
    assert values[0] == 0 and values[-1] == top and values == sorted(values) and len(values) >= 2
    if peak > 0 and peak != float("inf"):
        shown = min(peak, AXIS_PEAK_MAX)
        assert top >= shown or math.isclose(top, shown, rel_tol=1e-9)
