"""The read side of performance monitoring: time ranges, the queries on ``TransactionRollup`` and
``TransactionTrace``, and the numbers and chart geometry the performance pages show.

A range is cut at its chart step (a minute for 1 h, an hour for 24 h and 7 d, a day for 30 d;
a custom range picks by length) and read from the coarsest rows that tile it exactly: the
minutes up to the first whole hour, the hours up to the first whole day, whole days, then
hours and minutes again at the end. Percentiles come from the sketches of those rows merged
(``processing.sketches``), so they are the percentiles of exactly the requests in the range,
never averages of per-bucket percentiles. A 30-day table reads one row per name and day.

Every query here is scoped by an ``App`` that the caller resolved with
``accounts.selectors.app_for_member``. Rollups and traces are kept per environment; without one
chosen, the rows of every environment are merged (sketches merge exactly), so "all" is exact.
This module never writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.utils import timezone

from accounts.models import App
from processing.models import TransactionName, TransactionRollup, TransactionTrace
from processing.sketches import Sketch

from .charts import TICK_SPACING, Axes, Rate, figure_format, rate_of, value_axes

MINUTE, HOUR, DAY = 60, 3600, 86400
RANGES = {"1h": (HOUR, MINUTE), "24h": (DAY, HOUR), "7d": (7 * DAY, HOUR), "30d": (30 * DAY, DAY)}
DEFAULT_RANGE = "24h"
CUSTOM_MAX = timedelta(days=90)
# No rollup is older than the intake's earliest accepted time, or newer than now: a custom range
# outside these holds nothing, and its arithmetic (buckets, steps) would overflow near year 9999.
CUSTOM_EARLIEST = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)
CUSTOM_FUTURE = timedelta(days=1)
QUANTILES = (0.5, 0.95, 0.99)
TABLE_SORTS = {
    "impact": "Impact",
    "rpm": "Throughput",
    "avg": "Avg",
    "p95": "p95",
    "p99": "p99",
    "error_rate": "Error rate",
    "name": "Name",
}
SLOWEST_TRACES = 10


# --- Ranges --------------------------------------------------------------------------------------


@dataclass
class TimeRange:
    key: str  # "1h", "24h", "7d", "30d" or "custom"
    start: datetime
    end: datetime
    step: int  # seconds per chart point

    @property
    def minutes(self) -> float:
        return (self.end - self.start).total_seconds() / 60

    def minutes_elapsed(self, now: datetime | None = None) -> float:
        """The minutes of the range up to now: a range ends with the current (partial) step, and
        a rate over the minutes still to come would read low (a 30-day range ends at midnight)."""
        end = min(self.end, now or timezone.now())
        return max((end - self.start).total_seconds(), 60) / 60

    @property
    def buckets(self) -> list[datetime]:
        count = int((self.end - self.start).total_seconds() // self.step)
        return [self.start + timedelta(seconds=self.step * index) for index in range(count)]

    @property
    def step_label(self) -> str:
        return {MINUTE: "minute", HOUR: "hour", DAY: "day"}[self.step]


def _floor(moment: datetime, step: int) -> datetime:
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % step, tz=dt_timezone.utc)


def _ceil(moment: datetime, step: int) -> datetime:
    floored = _floor(moment, step)
    return floored if floored == moment else floored + timedelta(seconds=step)


def _step_for(start: datetime, end: datetime, now: datetime) -> int:
    """The finest step whose rows are still kept for ``start`` and that gives at most a few
    hundred chart points."""
    span = end - start
    limits = settings.OPBEAT_LIMITS
    if span <= timedelta(hours=6) and start >= now - timedelta(hours=limits["transaction_minute_retention_hours"]):
        return MINUTE
    if span <= timedelta(days=8) and start >= now - timedelta(days=limits["transaction_hour_retention_days"]):
        return HOUR
    return DAY


def _parse_moment(value: str) -> datetime | None:
    """An ISO 8601 time in UTC, or None when it is malformed or its offset overflows year 1 or
    9999 (``0001-01-01T00:00+23:59`` parses but has no UTC time)."""
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt_timezone.utc)
        return moment.astimezone(dt_timezone.utc)
    except (ValueError, OverflowError):
        return None


def time_range_parse(params, *, now: datetime | None = None) -> tuple[TimeRange, str]:
    """The range asked for by ``?range=1h|24h|7d|30d`` or ``?from=..&to=..`` (ISO 8601, UTC
    when no offset); returns it and a message when the request was corrected."""
    now = now or timezone.now()
    key = params.get("range", "")
    problem = ""
    if params.get("from") or params.get("to") or key == "custom":
        start = _parse_moment(params.get("from", ""))
        end = _parse_moment(params.get("to", "")) if params.get("to") else now
        if start is None or end is None or start >= end:
            problem = "The custom range needs `from` before `to` (e.g. 2026-11-20T08:00); showing the last 24 h."
        elif start < CUSTOM_EARLIEST or end > now + CUSTOM_FUTURE:
            problem = (
                f"The custom range must lie between {CUSTOM_EARLIEST:%Y-%m-%d} and now "
                f"({now:%Y-%m-%d %H:%M} UTC); showing the last 24 h."
            )
        else:
            if end - start > CUSTOM_MAX:
                start = end - CUSTOM_MAX
                problem = "Custom ranges are limited to 90 days; showing the last 90 days of it."
            step = _step_for(start, end, now)
            return TimeRange("custom", _floor(start, step), _ceil(end, step), step), problem
        key = DEFAULT_RANGE
    if key not in RANGES:
        if key and not problem:
            problem = f"The range must be one of {', '.join(RANGES)} or a custom one; showing the last 24 h."
        key = DEFAULT_RANGE
    span, step = RANGES[key]
    end = _floor(now, step) + timedelta(seconds=step)
    return TimeRange(key, end - timedelta(seconds=span), end, step), problem


def range_pieces(start: datetime, end: datetime) -> list[tuple[int, datetime, datetime]]:
    """[(resolution, from, to)] tiling [start, end) with the fewest rows: coarse in the middle,
    fine at the unaligned edges."""
    pieces: list[tuple[int, datetime, datetime]] = []

    def tile(a: datetime, b: datetime, resolutions: tuple[int, ...]) -> None:
        if a >= b:
            return
        if not resolutions:
            return
        coarse, finer = resolutions[0], resolutions[1:]
        inner_start, inner_end = _ceil(a, coarse), _floor(b, coarse)
        if inner_start >= inner_end:
            tile(a, b, finer)
            return
        tile(a, inner_start, finer)
        pieces.append((coarse, inner_start, inner_end))
        tile(inner_end, b, finer)

    tile(start, end, (DAY, HOUR, MINUTE))
    return sorted(pieces, key=lambda piece: piece[1])


# --- Aggregates ----------------------------------------------------------------------------------


@dataclass
class Stats:
    """A name's (or the app's) requests over a range or in one chart bucket."""

    count: int = 0
    errors: int = 0
    sketch: Sketch = field(default_factory=Sketch)
    span_base: float = 0.0
    span_ms: dict[str, float] = field(default_factory=dict)
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    def add(self, count: int, errors: int, total: float, minimum: float, maximum: float, blob) -> None:
        self.count += count
        self.errors += errors
        self.sketch.add_stats(count=count, total=total, minimum=minimum, maximum=maximum)
        self.sketch.add_encoded(blob)

    def add_spans(self, base: float, spans: dict | None) -> None:
        # Stored JSON may hold anything: only finite numbers count.
        self.span_base += _num(base)
        for kind, ms in (spans.items() if isinstance(spans, dict) else ()):
            self.span_ms[kind] = self.span_ms.get(kind, 0.0) + _num(ms)

    def finish(self) -> "Stats":
        self.p50, self.p95, self.p99 = self.sketch.quantiles(list(QUANTILES))
        return self

    @property
    def avg(self) -> float | None:
        return self.sketch.sum / self.count if self.count else None

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def error_percent(self) -> float:
        return 100 * self.error_rate

    @property
    def min(self) -> float | None:
        return self.sketch.min if self.count else None

    @property
    def max(self) -> float | None:
        return self.sketch.max if self.count else None

    def kinds_avg(self) -> dict[str, float]:
        """Average ms per transaction spent in each span kind (shares of the measured time,
        scaled to the average duration)."""
        if not self.count or self.span_base <= 0:
            return {}
        avg = self.avg or 0.0
        return {kind: avg * ms / self.span_base for kind, ms in self.span_ms.items()}


_FIELDS = ("name_id", "bucket", "count", "errors", "sum_ms", "min_ms", "max_ms", "sketch")


def _rows(
    *, app: App, pieces, name_ids: list[int] | None, with_spans: bool = False, with_bucket: bool = True, environment: str = ""
):
    fields = (*_FIELDS, "span_base_ms", "span_ms") if with_spans else _FIELDS
    if not with_bucket:
        # Parsing thousands of timestamps nobody reads cost ~20 % of a 30-day overview.
        fields = tuple(name if name != "bucket" else "resolution" for name in fields)
    for resolution, start, end in pieces:
        rows = TransactionRollup.objects.filter(
            app=app,
            resolution=resolution,
            bucket__gte=start,
            bucket__lt=end,
        )
        if name_ids is not None:
            rows = rows.filter(name_id__in=name_ids)
        if environment:
            rows = rows.filter(environment=environment)
        yield from rows.values_list(*fields)


@dataclass
class NameRow:
    name: TransactionName
    stats: Stats
    rate: Rate

    impact: float = 0.0

    @property
    def rpm(self) -> float:
        return self.rate.per_minute


def names_table(
    *, app: App, time_range: TimeRange, sort: str = "impact", environment: str = ""
) -> tuple[list[NameRow], Stats, bool]:
    """Per transaction name over the range: requests/min, avg, p50/95/99, error rate and impact
    (avg x throughput, as a share of the largest); plus the app's totals, and whether names were
    grouped as ``_other`` because the app reached its cap."""
    names = {name.id: name for name in TransactionName.objects.filter(app=app)}
    per_name: dict[int, Stats] = {}
    for name_id, _resolution, count, errors, total, minimum, maximum, blob in _rows(
        app=app,
        pieces=range_pieces(time_range.start, time_range.end),
        name_ids=None,
        with_bucket=False,
        environment=environment,
    ):
        stats = per_name.get(name_id)
        if stats is None:
            stats = per_name[name_id] = Stats()
        stats.add(count, errors, total, minimum, maximum, blob)
    totals = Stats()
    rows = []
    minutes = time_range.minutes_elapsed()
    for name_id, stats in per_name.items():
        name = names.get(name_id)
        if name is None or not stats.count:
            continue
        stats.finish()
        if name.name == TransactionName.TOTAL:
            totals = stats
            continue
        rows.append(NameRow(name=name, stats=stats, rate=rate_of(count=stats.count, minutes=minutes)))
    # Impact: the time the app spends in a name (avg x throughput = its summed durations),
    # normalized to the largest, so 1.0 is where optimizing saves the most.
    largest = max((row.stats.sketch.sum for row in rows), default=0.0)
    for row in rows:
        row.impact = row.stats.sketch.sum / largest if largest > 0 else 0.0
    rows.sort(key=_sort_key(sort))
    capped = any(name.name == TransactionName.OTHER for name in names.values())
    return rows, totals, capped


def _sort_key(sort: str):
    if sort == "name":
        return lambda row: row.name.name.lower()
    getters = {
        "impact": lambda row: row.impact,
        "rpm": lambda row: row.rpm,
        "avg": lambda row: row.stats.avg or 0.0,
        "p95": lambda row: row.stats.p95 or 0.0,
        "p99": lambda row: row.stats.p99 or 0.0,
        "error_rate": lambda row: row.stats.error_rate,
    }
    getter = getters.get(sort, getters["impact"])
    return lambda row: (-getter(row), row.name.name)


def series(
    *, app: App, name: TransactionName, time_range: TimeRange, with_spans: bool = False, environment: str = ""
) -> tuple[list[Stats], Stats]:
    """One ``Stats`` per chart bucket of the range (the rows at the step's resolution), and the
    range's ``Stats`` (merged from the coarsest rows that tile it)."""
    index = {bucket: position for position, bucket in enumerate(time_range.buckets)}
    points = [Stats() for _ in index]
    overall = Stats()
    step_piece = [(time_range.step, time_range.start, time_range.end)]
    for row in _rows(app=app, pieces=step_piece, name_ids=[name.id], with_spans=with_spans, environment=environment):
        position = index.get(row[1])
        if position is None:
            continue
        points[position].add(*row[2:8])
        if with_spans:
            points[position].add_spans(row[8], row[9])
    pieces = range_pieces(time_range.start, time_range.end)
    for row in _rows(
        app=app, pieces=pieces, name_ids=[name.id], with_spans=with_spans, with_bucket=False, environment=environment
    ):
        overall.add(*row[2:8])
        if with_spans:
            overall.add_spans(row[8], row[9])
    for point in points:
        point.finish()
    return points, overall.finish()


def total_name(*, app: App) -> TransactionName | None:
    return TransactionName.objects.filter(app=app, name=TransactionName.TOTAL).first()


def transaction_name_for_app(*, app: App, name_id: int) -> TransactionName | None:
    return (
        TransactionName.objects.filter(
            app=app,
            id=name_id,
        )
        .exclude(name=TransactionName.TOTAL)
        .first()
    )


def slowest_traces(*, name: TransactionName, time_range: TimeRange, environment: str = "") -> list[TransactionTrace]:
    traces = TransactionTrace.objects.filter(
        name=name,
        timestamp__gte=time_range.start,
        timestamp__lt=time_range.end,
    )
    if environment:
        traces = traces.filter(environment=environment)
    return list(
        traces.defer("spans")
        .order_by("-duration_ms", "-id")[:SLOWEST_TRACES]
    )


def trace_for_name(*, name: TransactionName, trace_id: int) -> TransactionTrace | None:
    return TransactionTrace.objects.filter(name=name, id=trace_id).first()


def release_markers(*, app: App, time_range: TimeRange, environment: str = "") -> list[tuple[datetime, str]]:
    """(deployed at, version) of the app's releases in the range (of one environment when given)."""
    from processing.models import Release

    releases = Release.objects.filter(
        app=app,
        deployed_at__gte=time_range.start,
        deployed_at__lt=time_range.end,
    )
    if environment:
        releases = releases.filter(environment=environment)
    return list(
        releases.order_by("deployed_at")
        .values_list("deployed_at", "version")[:50]
    )


# --- Chart geometry (the templates draw the SVG, so every label is escaped) ----------------------


@dataclass
class Line:
    label: str
    css: str
    points: str  # SVG polyline "x,y x,y ..."
    # Values with no value beside them: a polyline through one point draws nothing, so they are
    # drawn as dots (a range with a single busy bucket would otherwise look empty).
    dots: list[tuple[float, float]] = field(default_factory=list)
    # (x, y, text, dx, anchor) written beside the dot of a series that has a single value: with
    # no line to read it against, a lone dot's height alone says little.
    values: list[list] = field(default_factory=list)


@dataclass
class LineChart:
    width: int
    height: int
    lines: list[Line]
    peak: float
    unit: str
    markers: list[tuple[float, str, datetime]]
    start: datetime
    end: datetime
    axes: Axes
    y_label: str = ""

    @property
    def peak_text(self) -> str:
        return _fmt(self.peak, self.unit)


def _x(position: int, count: int, width: int) -> float:
    return round(width * (position + 0.5) / max(count, 1), 2)


def _marker_positions(markers, time_range: TimeRange, width: int) -> list[tuple[float, str, datetime]]:
    span = (time_range.end - time_range.start).total_seconds()
    return [
        (round(width * (moment - time_range.start).total_seconds() / span, 2), version, moment) for moment, version in markers
    ]


def line_chart_build(
    *, series_values: dict[str, list[float | None]], css: dict[str, str], unit: str, time_range: TimeRange,
    markers=(), width: int = 720, height: int = 140, y_label: str = "",
) -> LineChart:  # fmt: skip
    """One polyline per series over the range's buckets (a bucket with no value is skipped), on
    axes from 0 to a round value above the peak, ticks in ``unit`` ("ms" or a rate)."""
    peak = max((value for values in series_values.values() for value in values if value is not None), default=0.0)
    top, axes = value_axes(
        peak=peak, height=height, width=width, start=time_range.start, end=time_range.end,
        y_label=y_label or unit, unit_format=lambda value: _fmt(value, unit, trim=True),
    )  # fmt: skip
    lines = []
    lone_labels: list[list] = []
    for label, values in series_values.items():
        xy = {
            position: (_x(position, len(values), width), round(height - height * value / top, 2))
            for position, value in enumerate(values)
            if value is not None
        }
        dots = [point for position, point in xy.items() if position - 1 not in xy and position + 1 not in xy]
        # A polyline through one point draws nothing: such a series is only its dot.
        points = " ".join(f"{x},{y}" for x, y in xy.values()) if len(xy) > 1 else ""
        lone = []
        if len(xy) == 1:
            [(position, (x, y))] = xy.items()
            # Written on the side with room: a dot in the right part of the chart gets its value on its left.
            dx, anchor = (-6, "end") if x > width * 0.6 else (6, "start")
            lone = [[x, y, _fmt(values[position], unit), dx, anchor]]
            lone_labels += lone
        lines.append(Line(label=label, css=css.get(label, ""), points=points, dots=dots, values=lone))
    _labels_spread(lone_labels)
    return LineChart(
        width=width, height=height, lines=lines, peak=peak, unit=unit, y_label=y_label or unit,
        markers=_marker_positions(markers, time_range, width), start=time_range.start, end=time_range.end, axes=axes,
    )  # fmt: skip


@dataclass
class StackBar:
    x: float
    width: float
    parts: list[tuple[str, float, float, float, str]]  # (kind, y, height, ms, colour)
    start: datetime


PALETTE = ("#8a9bb0", "#5b8def", "#f0ad4e", "#5cb85c", "#d9534f", "#9b59b6", "#1abc9c", "#e67e22", "#34495e", "#c0a16b")


def kind_colours(kinds: list[str]) -> dict[str, str]:
    return {kind: PALETTE[index % len(PALETTE)] for index, kind in enumerate(kinds)}


@dataclass
class StackedChart:
    width: int
    height: int
    bars: list[StackBar]
    axes: Axes


def stacked_chart_build(
    *, points: list[Stats], time_range: TimeRange, width: int = 720, height: int = 140
) -> tuple[StackedChart, list[str], float]:
    """Average time per transaction by span kind, one stacked bar per bucket."""
    buckets = time_range.buckets
    per_point = [point.kinds_avg() for point in points]
    kinds = sorted({kind for kinds in per_point for kind in kinds}, key=lambda kind: (kind != "app", kind))
    colours = kind_colours(kinds)
    peak = max((sum(kinds_avg.values()) for kinds_avg in per_point), default=0.0)
    top, axes = value_axes(
        peak=peak, height=height, width=width, start=time_range.start, end=time_range.end,
        y_label="ms per request", unit_format=lambda value: _fmt(value, "ms", trim=True),
    )  # fmt: skip
    slot = width / max(len(points), 1)
    bars = []
    for position, kinds_avg in enumerate(per_point):
        y = float(height)
        parts = []
        for kind in kinds:
            ms = kinds_avg.get(kind, 0.0)
            if ms <= 0 or peak <= 0:
                continue
            part_height = height * ms / top
            y -= part_height
            parts.append((kind, round(y, 2), round(part_height, 2), ms, colours[kind]))
        bars.append(StackBar(x=round(position * slot, 2), width=round(max(slot - 1, 0.5), 2), parts=parts, start=buckets[position]))
    return StackedChart(width=width, height=height, bars=bars, axes=axes), kinds, peak


@dataclass
class HistogramBar:
    x: float
    y: float
    width: float
    height: float
    low: float
    high: float
    count: int


@dataclass
class Histogram:
    width: int
    height: int
    bars: list[HistogramBar]
    axes: Axes


# A tick every so many bars of the histogram (40 log-spaced bars: 5 or so ticks).
HISTOGRAM_TICK_EVERY = 8


def histogram_build(*, sketch: Sketch, width: int = 720, height: int = 120) -> Histogram:
    """The latency distribution in log-spaced bars; the x ticks are the bars' lower edges."""
    bars = sketch.histogram(buckets=40)
    peak = max((count for _, _, count in bars), default=0)
    slot = width / max(len(bars), 1)
    x_ticks = [(round(position * slot, 2), _fmt(low, "ms")) for position, (low, _, _) in enumerate(bars) if position % HISTOGRAM_TICK_EVERY == 0]
    if bars:
        # The upper edge of the last bar closes the axis; a tick too close to it would overprint it.
        x_ticks = [tick for tick in x_ticks if width - tick[0] >= TICK_SPACING * 0.75 or tick[0] == 0]
        x_ticks.append((float(width), _fmt(bars[-1][1], "ms")))
    top, axes = value_axes(
        peak=peak, height=height, width=width, start=timezone.now(), end=timezone.now(), y_label="requests",
        x_label="duration (log scale)", integer=True, x_ticks=x_ticks,
    )  # fmt: skip
    out = []
    for position, (low, high, count) in enumerate(bars):
        bar_height = 0.0 if not peak else max(height * count / top, 1.0 if count else 0.0)
        out.append(
            HistogramBar(
                x=round(position * slot, 2), y=round(height - bar_height, 2), width=round(max(slot - 1, 0.5), 2),
                height=round(bar_height, 2), low=low, high=high, count=count,
            )  # fmt: skip
        )
    return Histogram(width=width, height=height, bars=out, axes=axes)


@dataclass
class WaterfallRow:
    span: dict
    depth: int
    left: float  # percent of the transaction
    width: float


def waterfall_build(trace: TransactionTrace) -> list[WaterfallRow]:
    """Spans in start order, indented under their parents, positioned as a share of the trace."""
    spans = [span for span in (trace.spans or []) if isinstance(span, dict)]
    total = max(trace.duration_ms, max((_num(s.get("start")) + _num(s.get("duration")) for s in spans), default=0.0), 1e-9)
    depth: dict[int, int] = {0: -1}
    rows = []
    for span in sorted(spans, key=lambda s: (_num(s.get("start")), _num(s.get("id")))):
        parent = span.get("parent") if isinstance(span.get("parent"), int) else 0
        level = depth.get(parent, -1) + 1
        if isinstance(span.get("id"), int):
            depth[span["id"]] = level
        left = 100 * _num(span.get("start")) / total
        rows.append(
            WaterfallRow(
                span=span,
                depth=min(level, 12),
                left=round(min(left, 100.0), 3),
                width=round(max(min(100 * _num(span.get("duration")) / total, 100.0 - left), 0.2), 3),
            )
        )
    return rows


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else 0.0


def _fmt(value: float, unit: str, *, trim: bool = False) -> str:
    """A point value (or with ``trim`` a tick value): durations in ms (s from a second on),
    rates and counts with three significant digits."""
    if unit == "ms":
        return f"{figure_format(value, trim=trim)} ms" if value < 1000 else f"{figure_format(value / 1000, trim=trim)} s"
    return figure_format(value, trim=trim)


# Lone-value labels closer than this (px) are moved apart: four percentiles of one bucket often
# lie within a few pixels of each other.
LABEL_GAP = 11


def _labels_spread(labels: list[list]) -> None:
    """Move the [x, y, ...] labels apart vertically, in place, keeping their order."""
    labels.sort(key=lambda label: label[1])
    for previous, label in zip(labels, labels[1:]):
        if label[1] - previous[1] < LABEL_GAP:
            label[1] = round(previous[1] + LABEL_GAP, 2)
