"""Ranges are read from the coarsest rows that tile them exactly, and custom ranges pick a step
whose rows are still kept."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dashboards.performance import DAY, HOUR, MINUTE, range_pieces, time_range_parse

NOW = datetime(2026, 11, 26, 14, 37, 12, tzinfo=timezone.utc)


def covered(pieces) -> list[tuple[datetime, datetime]]:
    return [(start, end) for _, start, end in pieces]


def test_pieces_tile_the_range_exactly_with_few_rows():
    start, end = datetime(2026, 11, 1, 22, 13, tzinfo=timezone.utc), datetime(2026, 11, 26, 14, 37, tzinfo=timezone.utc)
    pieces = range_pieces(start, end)
    spans = covered(pieces)
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no overlap
    rows = sum(int((e - s).total_seconds() // r) for r, s, e in pieces)
    assert rows == 47 + 1 + 24 + 14 + 37  # minutes, hours, days, hours, minutes
    assert [r for r, _, _ in pieces] == [MINUTE, HOUR, DAY, HOUR, MINUTE]


def test_named_ranges_end_at_the_current_step_and_custom_ranges_pick_a_kept_step():
    one_hour, _ = time_range_parse({"range": "1h"}, now=NOW)
    assert (one_hour.step, one_hour.end, len(one_hour.buckets)) == (MINUTE, datetime(2026, 11, 26, 14, 38, tzinfo=timezone.utc), 60)
    month, _ = time_range_parse({"range": "30d"}, now=NOW)
    assert (month.step, len(month.buckets)) == (DAY, 30)
    custom, problem = time_range_parse({"from": "2026-11-26T09:10", "to": "2026-11-26T11:00"}, now=NOW)
    assert (custom.key, custom.step, problem) == ("custom", MINUTE, "")
    old, _ = time_range_parse({"from": "2026-11-20T09:10", "to": "2026-11-20T11:00"}, now=NOW)
    assert old.step == HOUR  # minute rows of six days ago are pruned
    long, problem = time_range_parse({"from": "2026-01-01T00:00", "to": "2026-11-26T00:00"}, now=NOW)
    assert long.end - long.start <= timedelta(days=91) and "90 days" in problem
