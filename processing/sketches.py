"""The server's duration sketch: the agent's (``agent/opbeat_agent/sketch.py``, DDSketch's idea)
stored compactly, merged and read with numpy.

A duration ``x >= MIN_VALUE`` ms is counted in bin ``k = ceil(ln(x) / ln(gamma))``,
``gamma = (1 + a) / (1 - a)``, ``a = 1 %``; smaller ones in a zero count. Bin ``k`` stands for
``2 * gamma**k / (gamma + 1)``, within ``a`` of every value in it, so every quantile read from
a sketch is within 1 % of the exact one, and two sketches merge by adding counts: minutes into
hours, processes into apps, a day's rows into a 30-day percentile.

Stored form (``TransactionRollup.sketch``): ``<B item size><i first bin><Q zero count>`` then the
counts of bins ``first .. first + n - 1`` as little-endian unsigned integers of that size (4 bytes,
8 once a count passes 2**32). Dense, because the bins of one name's durations are contiguous in
practice (a 1-100 ms endpoint spans ~230 bins, under 1 KB) and numpy then merges a row with one
slice add instead of a Python loop over its bins (a 30-day page merges thousands of rows).

Pure: no Django, no I/O.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

RELATIVE_ACCURACY = 0.01
MIN_VALUE = 1e-3
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_GAMMA_LOG = math.log(GAMMA)
_HEADER = struct.Struct("<BiQ")
# Bins an incoming sketch may span (1 µs .. ~1 day at 1 %); anything wider is refused by rebinning.
KEY_MIN, KEY_MAX = -400, 1000


def bin_of(value: float) -> int | None:
    if value < MIN_VALUE:
        return None
    return math.ceil(math.log(value) / _GAMMA_LOG)


def bin_value(key: int) -> float:
    return 2 * GAMMA**key / (GAMMA + 1)


def bins_rebin(*, bins: list[list[int]], accuracy: float) -> dict[int, int]:
    """Bins of a sketch made with another relative accuracy, moved to ours (each bin's
    representative value re-binned: the error is then at most the two accuracies added)."""
    if abs(accuracy - RELATIVE_ACCURACY) < 1e-12:
        return {int(k): int(n) for k, n in bins if KEY_MIN <= k <= KEY_MAX}
    gamma = (1 + accuracy) / (1 - accuracy)
    out: dict[int, int] = {}
    for k, n in bins:
        value = 2 * gamma**k / (gamma + 1)
        key = bin_of(value)
        if key is not None and KEY_MIN <= key <= KEY_MAX:
            out[key] = out.get(key, 0) + int(n)
    return out


@dataclass
class Sketch:
    """A merged sketch: counts of bins ``offset .. offset + len(counts) - 1`` plus the zero bin,
    and the exact count, sum, min and max kept beside it."""

    offset: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    zero_count: int = 0
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = 0.0

    def add_bins(self, bins: dict[int, int], zero_count: int = 0) -> None:
        if bins:
            low, high = min(bins), max(bins)
            self._cover(low, high)
            for key, n in bins.items():
                self.counts[key - self.offset] += n
        self.zero_count += zero_count

    def add_encoded(self, blob: bytes | memoryview | None) -> None:
        """Merge a stored sketch. One that is not in the stored form (truncated, another item
        size, bins outside ``KEY_MIN .. KEY_MAX``) is left out rather than raising or growing
        the array to its claimed span: a corrupt row must not break a page or its memory."""
        if not blob:
            return
        blob = bytes(blob)
        if len(blob) < _HEADER.size:
            return
        size, first, zero = _HEADER.unpack_from(blob)
        if size not in (4, 8) or (len(blob) - _HEADER.size) % size:
            return
        if (len(blob) - _HEADER.size) and not KEY_MIN <= first <= first + (len(blob) - _HEADER.size) // size - 1 <= KEY_MAX:
            return
        counts = np.frombuffer(blob, dtype="<u4" if size == 4 else "<u8", offset=_HEADER.size)
        if len(counts):
            self._cover(first, first + len(counts) - 1)
            start = first - self.offset
            self.counts[start : start + len(counts)] += counts
        self.zero_count += zero

    def add_stats(self, *, count: int, total: float, minimum: float, maximum: float) -> None:
        if count <= 0:
            return
        self.count += count
        self.sum += total
        self.min = min(self.min, minimum)
        self.max = max(self.max, maximum)

    def _cover(self, low: int, high: int) -> None:
        if not len(self.counts):
            # Sized for every bin a duration can have (1 µs .. ~1 day) at once: merging rows with
            # different spans then never regrows the array (11 KB; a cumulative sum over it is ~5 µs).
            self.offset = min(low, KEY_MIN)
            self.counts = np.zeros(max(high, KEY_MAX) - self.offset + 1, dtype=np.uint64)
            return
        end = self.offset + len(self.counts) - 1
        if low >= self.offset and high <= end:
            return
        new_low, new_high = min(low, self.offset), max(high, end)
        grown = np.zeros(new_high - new_low + 1, dtype=np.uint64)
        grown[self.offset - new_low : self.offset - new_low + len(self.counts)] = self.counts
        self.offset, self.counts = new_low, grown

    def encode(self) -> bytes:
        nonzero = np.flatnonzero(self.counts)
        if not len(nonzero):
            return _HEADER.pack(4, 0, self.zero_count)
        counts = self.counts[nonzero[0] : nonzero[-1] + 1]
        wide = int(counts.max()) >= 2**32
        return _HEADER.pack(8 if wide else 4, self.offset + int(nonzero[0]), self.zero_count) + counts.astype(
            "<u8" if wide else "<u4"
        ).tobytes()

    @property
    def binned(self) -> int:
        return int(self.counts.sum()) + self.zero_count

    def quantiles(self, qs: list[float]) -> list[float | None]:
        """The values at quantiles ``qs`` (0..1), as the agent reads them: walk the bins until
        the cumulative count passes ``q * (n - 1)``; within 1 % of the exact value, and never
        outside the min and max actually seen."""
        total = self.binned
        if total == 0:
            return [None for _ in qs]
        # In floats: exact below 2**53 requests, and a zero count summed past 2**64 (rows
        # corrupted or merged over centuries) cannot overflow numpy's integers.
        cumulative = np.cumsum(self.counts, dtype=np.float64) + float(self.zero_count)
        out: list[float | None] = []
        for q in qs:
            rank = q * (total - 1)
            if rank < self.zero_count:
                out.append(0.0)
                continue
            index = int(np.searchsorted(cumulative, rank, side="right"))
            if index >= len(cumulative):
                value = self.max
            else:
                value = bin_value(self.offset + index)
            if self.count:
                value = min(max(value, self.min), self.max)
            out.append(value)
        return out

    def histogram(self, *, buckets: int = 30) -> list[tuple[float, float, int]]:
        """The distribution in at most ``buckets`` log-spaced bars: (low ms, high ms, count)."""
        nonzero = np.flatnonzero(self.counts)
        if not len(nonzero):
            return [(0.0, MIN_VALUE, self.zero_count)] if self.zero_count else []
        first, last = int(nonzero[0]), int(nonzero[-1])
        width = max(1, math.ceil((last - first + 1) / buckets))
        bars = []
        for start in range(first, last + 1, width):
            n = int(self.counts[start : start + width].sum())
            low = GAMMA ** (self.offset + start - 1)
            high = GAMMA ** (self.offset + start + width - 1)
            bars.append((low, high, n))
        if self.zero_count:
            bars.insert(0, (0.0, MIN_VALUE, self.zero_count))
        return bars


def sketch_encode(*, bins: dict[int, int], zero_count: int) -> bytes:
    sketch = Sketch()
    sketch.add_bins(bins, zero_count)
    return sketch.encode()


def sketch_of(values: list[float]) -> Sketch:
    """A sketch of raw durations (tests and the benchmark's exact comparison)."""
    bins: dict[int, int] = {}
    zero = 0
    for value in values:
        key = bin_of(value)
        if key is None:
            zero += 1
        else:
            bins[key] = bins.get(key, 0) + 1
    sketch = Sketch()
    sketch.add_bins(bins, zero)
    if values:
        sketch.add_stats(count=len(values), total=float(sum(values)), minimum=min(values), maximum=max(values))
    return sketch
