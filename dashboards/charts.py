"""Charts as geometry for inline SVG, computed on the server: no JavaScript library and no
network, so the dashboard renders the same offline, in a headless browser and in a test. Also
the one rule for writing a rate or a tick value (``figure_format``, ``rate_of``).

A chart's marks are laid out in a plot area of ``width`` x ``height`` with (0, 0) at its top
left; its ``Axes`` hold the tick values and labels, placed in margins around the plot (the
template gives the SVG a viewBox that starts at minus the left and top margins).

This module only does arithmetic on counts it is given; it never queries the database and never
builds markup (the templates draw the SVG, so every label goes through Django's autoescaping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone

from django.utils import timezone

MINUTE_SECONDS, HOUR_SECONDS, DAY_SECONDS = 60, 3600, 86400
# Room for the y tick values (up to "1,000 ms" / "10.0 s" at 10 px), the x tick values and the
# two axis titles.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 14, 10, 36
# Steps between time ticks, each with the format of its labels; the first one that gives at most
# one tick per ``TICK_SPACING`` pixels is used.
TIME_STEPS = (
    (MINUTE_SECONDS, "%H:%M"), (5 * MINUTE_SECONDS, "%H:%M"), (10 * MINUTE_SECONDS, "%H:%M"),
    (15 * MINUTE_SECONDS, "%H:%M"), (30 * MINUTE_SECONDS, "%H:%M"), (HOUR_SECONDS, "%H:%M"),
    (2 * HOUR_SECONDS, "%H:%M"), (3 * HOUR_SECONDS, "%H:%M"), (6 * HOUR_SECONDS, "%H:%M"),
    (12 * HOUR_SECONDS, "%H:%M"), (DAY_SECONDS, "%b %-d"), (2 * DAY_SECONDS, "%b %-d"), (7 * DAY_SECONDS, "%b %-d"),
    (14 * DAY_SECONDS, "%b %-d"), (28 * DAY_SECONDS, "%b %-d"),
)  # fmt: skip
TICK_SPACING = 80
# 1970-01-01 was a Thursday: weekly ticks are shifted to fall on Mondays.
_WEEK_SHIFT = 4 * DAY_SECONDS


def figure_format(value: float, *, digits: int = 3, trim: bool = False) -> str:
    """``value`` with ``digits`` significant digits, never in exponent notation, with thousands
    separators: 0.00417, 0.833, 41.7, 1.50, 12,345. A rate of 1 request in 30 days and one of
    1,000 per minute both read as a number of the size a person expects. ``trim`` drops trailing
    zeros (a tick value: 0.5, 1.5, 50)."""
    if not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits - 1:
        return f"{value:,.0f}"
    text = f"{value:,.{digits - 1 - magnitude}f}"
    return text.rstrip("0").rstrip(".") if trim else text


def tick_format(value: float) -> str:
    return figure_format(value, trim=True)


@dataclass(frozen=True)
class Rate:
    """A count over a time, per minute, or per hour when that is below one a minute."""

    per_minute: float
    value: float
    unit: str  # "/min" or "/h"

    def __str__(self) -> str:
        return f"{figure_format(self.value)} {self.unit}"


def rate_of(*, count: float, minutes: float) -> Rate:
    per_minute = count / minutes if minutes > 0 else 0.0
    if 0 < per_minute < 1:
        return Rate(per_minute=per_minute, value=per_minute * 60, unit="/h")
    return Rate(per_minute=per_minute, value=per_minute, unit="/min")


AXIS_PEAK_MAX = 1e300


def ticks_nice(peak: float, *, count: int = 4, integer: bool = False) -> tuple[float, list[float]]:
    """(top, tick values from 0 to top): steps of 1, 2 or 5 times a power of ten, at most
    ``count`` of them above 0, top the first step at or above ``peak`` (whole steps when
    ``integer``: a count of errors has no 0.5)."""
    if not math.isfinite(peak) or peak <= 0:
        return 1.0, [0.0, 1.0]
    # Past this the steps' multiples overflow a float; a chart of such values is clipped anyway.
    peak = min(peak, AXIS_PEAK_MAX)
    raw = peak / count
    if raw <= 0:  # a subnormal peak divides to zero: nothing on the scale to show
        return 1.0, [0.0, 1.0]
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(factor * power for factor in (1, 2, 5, 10) if factor * power >= raw)
    if integer:
        step = max(step, 1.0)
    steps = max(1, math.ceil(peak / step - 1e-9))
    # 12 significant digits, not decimals: steps of 1e-35 must not round to 0.
    values = [float(f"{step * index:.12g}") for index in range(steps + 1)]
    return values[-1], values


def time_ticks(*, start: datetime, end: datetime, width: float) -> list[tuple[float, str]]:
    """(x, label) of round UTC times between ``start`` and ``end`` mapped onto ``width`` pixels;
    a tick at midnight reads as the date."""
    span = (end - start).total_seconds()
    if span <= 0 or width <= 0:
        return []
    most = max(int(width // TICK_SPACING), 2)
    step, label = next(((step, label) for step, label in TIME_STEPS if span / step <= most), TIME_STEPS[-1])
    shift = _WEEK_SHIFT if step % (7 * DAY_SECONDS) == 0 else 0
    first = math.ceil((start.timestamp() - shift) / step) * step + shift
    ticks = []
    moment = first
    while moment <= end.timestamp() + 1e-6:
        when = datetime.fromtimestamp(moment, tz=dt_timezone.utc)
        text = when.strftime("%b %-d" if step < DAY_SECONDS and when.hour == when.minute == 0 else label)
        ticks.append((round(width * (moment - start.timestamp()) / span, 2), text))
        moment += step
    return ticks


@dataclass
class Axes:
    """Tick values and axis titles around a plot of ``width`` x ``height``; ``y_ticks`` hold
    (y, label), ``x_ticks`` (x, label), in the plot's coordinates."""

    width: float
    height: float
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    y_label: str
    x_label: str
    left: int = MARGIN_LEFT
    right: int = MARGIN_RIGHT
    top: int = MARGIN_TOP
    bottom: int = MARGIN_BOTTOM

    @property
    def outer_width(self) -> float:
        return self.width + self.left + self.right

    @property
    def outer_height(self) -> float:
        return self.height + self.top + self.bottom

    @property
    def view_box(self) -> str:
        return f"{-self.left} {-self.top} {self.outer_width} {self.outer_height}"

    @property
    def tick_end(self) -> float:
        return self.height + 4

    @property
    def x_tick_y(self) -> float:
        return self.height + 14

    @property
    def x_label_y(self) -> float:
        return self.height + self.bottom - 4

    @property
    def y_label_x(self) -> float:
        # The y title is drawn rotated by -90 degrees: its x is minus the plot's middle height.
        return -self.height / 2

    @property
    def y_label_y(self) -> float:
        return -self.left + 11


def value_axes(
    *, peak: float, height: float, width: float, start: datetime, end: datetime, y_label: str, x_label: str = "time (UTC)",
    unit_format=tick_format, integer: bool = False, x_ticks: list[tuple[float, str]] | None = None,
) -> tuple[float, Axes]:  # fmt: skip
    """The scale top for values up to ``peak`` and the axes of a chart over time (or with the
    ``x_ticks`` given); a mark of value v is drawn ``height * v / top`` high."""
    top, values = ticks_nice(peak, count=4 if height >= 100 else 2, integer=integer)
    y_ticks = [(round(height - height * value / top, 2), unit_format(value)) for value in values]
    if x_ticks is None:
        x_ticks = time_ticks(start=start, end=end, width=width)
    return top, Axes(width=width, height=height, y_ticks=y_ticks, x_ticks=x_ticks, y_label=y_label, x_label=x_label)


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    start: datetime
    count: int


@dataclass
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    total: int
    peak: int
    start: datetime
    end: datetime
    # (x, version, deployed at) of the releases in the window (``dashboards.releases.bar_chart_markers``).
    markers: list = field(default_factory=list)
    # None for a sparkline (a table cell, read for its shape; its column says the range).
    axes: Axes | None = None


def moment_shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, saturating at the ends of datetime's range instead of raising: a time
    stored near year 1 or 9999 (written before the intake bounded them, or by hand) must not
    break a page."""
    try:
        return moment + delta
    except OverflowError:
        edge = datetime.max if delta > timedelta(0) else datetime.min
        return edge.replace(tzinfo=moment.tzinfo)


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hours_window(*, hours: int, now: datetime | None = None) -> list[datetime]:
    """The starts of the last ``hours`` hours, oldest first, the current (partial) hour last."""
    current = hour_floor(now or timezone.now())
    return [current - timedelta(hours=hours - 1 - index) for index in range(hours)]


def bar_chart_build(
    *, counts: dict[datetime, int], buckets: list[datetime], width: int, height: int, gap: float = 1.0, y_label: str = ""
) -> BarChart:
    """One bar per hour bucket (missing buckets are zero), scaled to the tallest, or with
    ``y_label`` to the axis's top tick; a non-zero count always gets at least one pixel so a
    single event stays visible next to a spike."""
    peak = max((counts.get(bucket, 0) for bucket in buckets), default=0)
    start = buckets[0] if buckets else hour_floor(timezone.now())
    end = (buckets[-1] + timedelta(hours=1)) if buckets else start
    axes = None
    top = float(peak)
    if y_label:
        top, axes = value_axes(peak=peak, height=height, width=width, start=start, end=end, y_label=y_label, integer=True)
    slot = width / max(len(buckets), 1)
    bars = []
    for index, bucket in enumerate(buckets):
        count = counts.get(bucket, 0)
        bar_height = 0.0 if not peak else max(height * count / top, 1.0 if count else 0.0)
        bars.append(
            Bar(
                x=round(index * slot, 2),
                y=round(height - bar_height, 2),
                width=round(max(slot - gap, 0.5), 2),
                height=round(bar_height, 2),
                start=bucket,
                count=count,
            )
        )
    return BarChart(
        width=width,
        height=height,
        bars=bars,
        total=sum(bar.count for bar in bars),
        peak=peak,
        start=start,
        end=end,
        axes=axes,
    )
