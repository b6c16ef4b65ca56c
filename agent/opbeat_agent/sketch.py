"""A mergeable sketch of durations with bounded relative error (the DDSketch idea).

Each value ``x > 0`` is counted in bucket ``k = ceil(log(x) / log(gamma))`` with
``gamma = (1 + a) / (1 - a)``; reporting bucket ``k`` as ``2 * gamma**k / (gamma + 1)`` is within
``a`` (relative) of every value in it, so any quantile read from the sketch is within ``a`` of the
true one. Two sketches with the same ``a`` merge by adding bucket counts: the server can combine
minutes, processes and hosts without losing accuracy, which averaged percentiles cannot do.

With ``a = 1%`` a range from 1 µs to 1 hour spans about 1,100 buckets; a minute of one endpoint
usually fills a few dozen.

While it holds at most ``EXACT_MAX`` durations the sketch also keeps them as they are
(``values``), and sends them beside the bins: the server then shows the exact percentiles of a
quiet endpoint, and a server that does not know ``values`` reads the bins as before.

Quantiles follow the nearest-rank rule: the value at rank ``ceil(q * n)`` (1-based) of the ``n``
sorted durations, so "p99 = x" reads "99 % took at most x". Pure: no I/O, no threads.
"""

from __future__ import annotations

import math
from array import array
from typing import Iterable, Optional

DEFAULT_RELATIVE_ACCURACY = 0.01
# Durations below this many milliseconds (1 µs) are counted as zero: clock granularity, not data.
MIN_VALUE = 1e-3
# Durations kept exactly per sketch (the server keeps as many per row: processing/sketches.py).
EXACT_MAX = 256


def rank_nearest(q: float, n: int) -> int:
    """The 1-based rank of quantile ``q`` among ``n`` values: ``ceil(q * n)`` (``q * n`` rounded
    to 9 decimals first, so 0.07 * 100 is rank 7, not 8), at least 1."""
    return min(max(math.ceil(round(q * n, 9)), 1), n)


class DurationSketch:
    __slots__ = ("relative_accuracy", "_gamma_log", "bins", "zero_count", "count", "sum", "min", "max", "values")

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError("relative_accuracy must be between 0 and 1")
        self.relative_accuracy = relative_accuracy
        gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._gamma_log = math.log(gamma)
        self.bins: dict = {}
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        # The durations while there are at most EXACT_MAX of them, else None; an array of
        # doubles: 2 KB a group at most, not 8 KB of float objects.
        self.values: Optional[array] = array("d")

    @property
    def gamma(self) -> float:
        return math.exp(self._gamma_log)

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if self.values is not None:
            if self.count > EXACT_MAX:
                self.values = None
            else:
                self.values.append(value)
        if value < MIN_VALUE:
            self.zero_count += 1
            return
        key = math.ceil(math.log(value) / self._gamma_log)
        self.bins[key] = self.bins.get(key, 0) + 1

    def merge(self, other: "DurationSketch") -> None:
        if abs(other.relative_accuracy - self.relative_accuracy) > 1e-12:
            raise ValueError("sketches with different accuracy do not merge")
        for key, n in other.bins.items():
            self.bins[key] = self.bins.get(key, 0) + n
        self.zero_count += other.zero_count
        if self.values is not None and other.values is not None and self.count + other.count <= EXACT_MAX:
            self.values = self.values + other.values
        else:
            self.values = None
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> Optional[float]:
        """The value at quantile ``q`` (0..1) by the nearest-rank rule: exact while the sketch
        keeps its values, else within ``relative_accuracy`` of the exact one."""
        if self.count == 0:
            return None
        if self.values is not None and len(self.values) == self.count:
            return sorted(self.values)[rank_nearest(q, self.count) - 1]
        rank = rank_nearest(q, self.count)
        seen = self.zero_count
        if rank <= seen:
            return min(max(0.0, self.min), self.max)
        gamma = self.gamma
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen >= rank:
                value = 2 * gamma**key / (gamma + 1)
                # Never outside what was actually seen.
                return min(max(value, self.min), self.max)
        return self.max

    def to_dict(self) -> dict:
        """The wire form (see PROTOCOL.md): bins as sorted ``[key, count]`` pairs, and the
        durations (ms, to the microsecond, as ``min`` and ``max`` are sent) while kept."""
        data = {
            "relative_accuracy": self.relative_accuracy,
            "min_value": MIN_VALUE,
            "zero_count": self.zero_count,
            "bins": [[key, self.bins[key]] for key in sorted(self.bins)],
        }
        if self.values is not None and self.count:
            data["values"] = [round(value, 3) for value in self.values]
        return data

    @classmethod
    def from_dict(cls, data: dict, *, count: int, total: float, minimum: float, maximum: float) -> "DurationSketch":
        sketch = cls(float(data["relative_accuracy"]))
        sketch.zero_count = int(data.get("zero_count", 0))
        sketch.bins = {int(k): int(n) for k, n in data.get("bins", ())}
        values = data.get("values")
        sketch.values = array("d", values) if isinstance(values, list) and len(values) == count else None
        sketch.count, sketch.sum, sketch.min, sketch.max = count, total, minimum, maximum
        return sketch

    @classmethod
    def of(cls, values: Iterable[float], relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> "DurationSketch":
        sketch = cls(relative_accuracy)
        for value in values:
            sketch.add(value)
        return sketch
