"""Folding finished transactions into what the transactions body carries: per (name, result,
kind, minute) a histogram (count, sum, min, max and a mergeable duration sketch), and the slowest
few transactions of each group kept whole, with their spans, for the waterfall.

Runs in the reporter's thread only. Memory is bounded: at most ``max_groups`` groups between two
sends (the rest are counted as dropped) and ``traces_per_group`` full transactions per group.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import uuid
from typing import Any, Optional

from .sketch import DurationSketch
from .tracing import Transaction


def _iso(ts: float, *, minute: bool = False) -> str:
    moment = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    if minute:
        return moment.strftime("%Y-%m-%dT%H:%M:00Z")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _result(value: Any) -> Any:
    # HTTP statuses stay integers (as the original agent sent them); anything else is a string.
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return str(value)


def exclusive_by_kind(transaction: Transaction) -> dict:
    """Milliseconds per span kind that no child span covers (a template's time without the SQL
    run inside it); ``app`` is the transaction's own code: its duration minus its top spans."""
    children: dict = {}
    for span in transaction.spans:
        if span.duration is not None:
            children[span.parent] = children.get(span.parent, 0.0) + span.duration
    kinds: dict = {}
    for span in transaction.spans:
        if span.duration is not None:
            own = max(span.duration - children.get(span.id, 0.0), 0.0)
            kinds[span.kind or "other"] = kinds.get(span.kind or "other", 0.0) + own
    kinds["app"] = kinds.get("app", 0.0) + max(transaction.duration - children.get(0, 0.0), 0.0)
    return kinds


def trace_dict(transaction: Transaction) -> dict:
    return {
        "id": uuid.uuid4().hex,
        "transaction": transaction.name,
        "result": _result(transaction.result),
        "kind": transaction.kind,
        "timestamp": _iso(transaction.timestamp),
        "duration": round(transaction.duration, 3),
        "spans": [span.to_dict(transaction.start) for span in transaction.spans if span.duration is not None],
        "spans_dropped": transaction.spans_dropped,
    }


class TransactionsAggregator:
    def __init__(self, *, relative_accuracy: float, traces_per_group: int, max_groups: int) -> None:
        self.relative_accuracy = relative_accuracy
        self.traces_per_group = traces_per_group
        self.max_groups = max_groups
        self._order = itertools.count()
        self.reset()

    def reset(self) -> None:
        self.groups: dict = {}
        # Per group, a min-heap of (duration, order, transaction): the root is the fastest kept,
        # the one to replace when a slower transaction arrives.
        self.samples: dict = {}
        # Per group, [ms of the transactions measured, {span kind: exclusive ms}]: where the time
        # went over every transaction whose spans were kept, not only the sampled traces.
        self.breakdowns: dict = {}
        self.dropped = 0

    def add(self, transaction: Transaction) -> None:
        name = transaction.name or "<unnamed>"
        transaction.name = name
        minute = int(transaction.timestamp // 60) * 60
        key = (name, _result(transaction.result), transaction.kind, minute)
        sketch = self.groups.get(key)
        if sketch is None:
            if len(self.groups) >= self.max_groups:
                self.dropped += 1
                return
            sketch = self.groups[key] = DurationSketch(self.relative_accuracy)
            self.samples[key] = []
            self.breakdowns[key] = [0.0, {}]
        sketch.add(transaction.duration)
        if not transaction.spans_dropped:
            # A transaction whose spans were shed or capped would count their time as "app".
            breakdown = self.breakdowns[key]
            breakdown[0] += transaction.duration
            kinds = breakdown[1]
            for kind, ms in exclusive_by_kind(transaction).items():
                kinds[kind] = kinds.get(kind, 0.0) + ms
        if self.traces_per_group <= 0:
            return
        heap = self.samples[key]
        entry = (transaction.duration, next(self._order), transaction)
        if len(heap) < self.traces_per_group:
            heapq.heappush(heap, entry)
        elif transaction.duration > heap[0][0]:
            heapq.heapreplace(heap, entry)

    def drain(self) -> Optional[dict]:
        """The histograms and traces gathered since the last drain (None if nothing), and reset."""
        if not self.groups and not self.dropped:
            return None
        histograms = []
        traces = []
        for key, sketch in self.groups.items():
            name, result, kind, minute = key
            histograms.append(
                {
                    "transaction": name,
                    "result": result,
                    "kind": kind,
                    "timestamp": _iso(minute, minute=True),
                    "count": sketch.count,
                    "sum": round(sketch.sum, 3),
                    "min": round(sketch.min, 3),
                    "max": round(sketch.max, 3),
                    "sketch": sketch.to_dict(),
                }
            )
            base, kinds = self.breakdowns[key]
            if base > 0:
                histograms[-1]["span_ms"] = {"base": round(base, 3), "kinds": {k: round(v, 3) for k, v in kinds.items()}}
            for _, _, transaction in sorted(self.samples[key], reverse=True):
                traces.append(trace_dict(transaction))
        dropped = self.dropped
        self.reset()
        return {"histograms": histograms, "traces": traces, "dropped_groups": dropped}
