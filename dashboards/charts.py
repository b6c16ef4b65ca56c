"""Bar charts as geometry for inline SVG, computed on the server: no JavaScript library and no
network, so the dashboard renders the same offline, in a headless browser and in a test.

This module only does arithmetic on counts it is given; it never queries the database and never
builds markup (the templates draw the SVG, so every label goes through Django's autoescaping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone


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
    *, counts: dict[datetime, int], buckets: list[datetime], width: int, height: int, gap: float = 1.0
) -> BarChart:
    """One bar per bucket (missing buckets are zero), scaled to the tallest; a non-zero count always
    gets at least one pixel so a single event stays visible next to a spike."""
    peak = max((counts.get(bucket, 0) for bucket in buckets), default=0)
    slot = width / max(len(buckets), 1)
    bars = []
    for index, bucket in enumerate(buckets):
        count = counts.get(bucket, 0)
        bar_height = 0.0 if not peak else max(height * count / peak, 1.0 if count else 0.0)
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
        start=buckets[0] if buckets else hour_floor(timezone.now()),
        end=(buckets[-1] + timedelta(hours=1)) if buckets else hour_floor(timezone.now()),
    )
