"""The server's duration sketch: the agent's (``agent/opbeat_agent/sketch.py``, DDSketch's idea)
stored compactly, merged and read with numpy; exact while it holds few durations.

Exact form: while a row (or a merge of rows) holds at most ``EXACT_MAX`` durations, they are kept
as they are, to the microsecond (both clients send milliseconds with three decimals), and its
percentiles are the exact ones. Two exact sketches merge by concatenation; past ``EXACT_MAX``
durations the values are counted into bins.

Binned form: a duration ``x >= MIN_VALUE`` ms is counted in bin ``k = ceil(ln(x) / ln(gamma))``,
``gamma = (1 + a) / (1 - a)``, ``a = 1 %``; smaller ones in a zero count. Bin ``k`` stands for
``2 * gamma**k / (gamma + 1)``, within ``a`` of every value in it, so every quantile read from
a sketch is within 1 % of the exact one, and two sketches merge by adding counts: minutes into
hours, processes into apps, a day's rows into a 30-day percentile.

Percentiles follow the nearest-rank definition: the value at rank ``ceil(q * n)`` (1-based) of the
``n`` sorted durations, so "p99 = x" reads "99 % of the requests took at most x" (``rank_nearest``).
Every answer is clamped into the min and max the rows keep beside the sketch.

Stored forms (``TransactionRollup.sketch``), told apart by the first byte:

- exact: ``<B 0>`` then the durations in microseconds, sorted, as little-endian ``uint32``
  (at most 1 KB: 256 durations; an hour, the longest duration accepted, is 3.6e9 µs < 2**32);
- binned: ``<B item size><i first bin><Q zero count>`` then the counts of bins ``first .. first +
  n - 1`` as little-endian unsigned integers of that size (4 bytes, 8 once a count passes 2**32).
  Dense, because the bins of one name's durations are contiguous in practice (a 1-100 ms
  endpoint spans ~230 bins, under 1 KB) and numpy then merges a row with one slice add instead
  of a Python loop over its bins (a 30-day page merges thousands of rows).

Pure: no Django, no I/O.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

RELATIVE_ACCURACY = 0.01
MIN_VALUE = 1e-3
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_GAMMA_LOG = math.log(GAMMA)
_HEADER = struct.Struct("<BiQ")
# Bins an incoming sketch may span (1 µs .. ~1 day at 1 %); anything wider is refused by rebinning.
KEY_MIN, KEY_MAX = -400, 1000
# Durations kept exactly per sketch: a few hundred covers the minutes (and the quiet hours and
# days) most names have, at 1 KB a row, the size of a binned row of a busy name.
EXACT_MAX = 256
_EXACT_MARK = 0
_US_PER_MS = 1000.0
_US_MAX = 2**32 - 1
# Exact durations merged but not yet binned, past which they are binned at once: bounds a merge's
# memory (a 30-day page can merge thousands of exact rows) while binning in large numpy batches.
_PENDING_MAX = 1 << 16


def rank_nearest(q: float, n: int) -> int:
    """The 1-based rank of quantile ``q`` among ``n`` sorted values: ``ceil(q * n)``, at least 1.
    ``q * n`` is rounded to 9 decimals first, so 0.07 * 100 (7.000000000000001 in floats) is
    rank 7, not 8."""
    return min(max(math.ceil(round(q * n, 9)), 1), n)


def bin_of(value: float) -> int | None:
    if value < MIN_VALUE:
        return None
    return math.ceil(math.log(value) / _GAMMA_LOG)


def bin_value(key: int) -> float:
    return 2 * GAMMA**key / (GAMMA + 1)


def exact_of(values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Durations in ms as the exact form keeps them: microseconds, ``uint32``."""
    ms = np.asarray(values, dtype=np.float64)
    return np.rint(np.clip(np.nan_to_num(ms, nan=0.0), 0.0, _US_MAX / _US_PER_MS) * _US_PER_MS).astype(np.uint32)


def exact_encode(us: np.ndarray) -> bytes:
    """The exact stored form of durations in microseconds (``exact_of``)."""
    return bytes((_EXACT_MARK,)) + np.sort(us).astype("<u4").tobytes()


def bins_of(values: Iterable[float] | np.ndarray) -> tuple[dict[int, int], int]:
    """The bins and zero count of durations in ms (``bin_of`` over an array, in numpy)."""
    ms = np.asarray(values, dtype=np.float64)
    small = ms < MIN_VALUE
    zero = int(small.sum())
    ms = ms[~small] if zero else ms
    if not len(ms):
        return {}, zero
    keys, counts = np.unique(np.ceil(np.log(ms) / _GAMMA_LOG).astype(np.int64), return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist())), zero


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
    """A merged sketch, and the exact count, sum, min and max kept beside it (``add_stats``).

    Exact while it holds at most ``EXACT_MAX`` durations and nothing binned: ``exact`` holds
    them (microseconds, in the chunks they were added in). Otherwise its counts are those of
    bins ``offset .. offset + len(counts) - 1`` plus the zero bin, and exact durations added
    since are binned when it is read or encoded."""

    offset: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    zero_count: int = 0
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = 0.0
    exact: list[np.ndarray] = field(default_factory=list)
    exact_count: int = 0
    has_bins: bool = False

    @property
    def is_exact(self) -> bool:
        return not self.has_bins and self.exact_count <= EXACT_MAX

    @property
    def total(self) -> int:
        """How many durations it holds, exact and binned."""
        binned = int(self.counts.sum()) + self.zero_count if self.has_bins else 0
        return binned + self.exact_count

    def add_values(self, values: Iterable[float] | np.ndarray) -> None:
        """Durations in ms, kept exactly while the sketch stays exact."""
        self._exact_add(exact_of(values))

    def add_bins(self, bins: dict[int, int], zero_count: int = 0) -> None:
        if bins:
            low, high = min(bins), max(bins)
            self._cover(low, high)
            for key, n in bins.items():
                self.counts[key - self.offset] += n
            self.has_bins = True
        if zero_count:
            self.zero_count += zero_count
            self.has_bins = True

    def add_encoded(self, blob: bytes | memoryview | None) -> None:
        """Merge a stored sketch. One that is not in a stored form (truncated, another item
        size, bins outside ``KEY_MIN .. KEY_MAX``) is left out rather than raising or growing
        the array to its claimed span: a corrupt row must not break a page or its memory."""
        if not blob:
            return
        blob = bytes(blob)
        if blob[0] == _EXACT_MARK:
            if (len(blob) - 1) % 4 == 0:
                self._exact_add(np.frombuffer(blob, dtype="<u4", offset=1))
            return
        if len(blob) < _HEADER.size:
            return
        size, first, zero = _HEADER.unpack_from(blob)
        if size not in (4, 8) or (len(blob) - _HEADER.size) % size:
            return
        if (len(blob) - _HEADER.size) and not KEY_MIN <= first <= first + (
            len(blob) - _HEADER.size
        ) // size - 1 <= KEY_MAX:
            return
        counts = np.frombuffer(blob, dtype="<u4" if size == 4 else "<u8", offset=_HEADER.size)
        if len(counts):
            self._cover(first, first + len(counts) - 1)
            start = first - self.offset
            self.counts[start : start + len(counts)] += counts
            self.has_bins = True
        if zero:
            self.zero_count += zero
            self.has_bins = True

    def add_stats(self, *, count: int, total: float, minimum: float, maximum: float) -> None:
        if count <= 0:
            return
        self.count += count
        self.sum += total
        self.min = min(self.min, minimum)
        self.max = max(self.max, maximum)

    def _exact_add(self, us: np.ndarray) -> None:
        if not len(us):
            return
        self.exact.append(us)
        self.exact_count += len(us)
        if self.exact_count > _PENDING_MAX:
            self._fold()

    def _fold(self) -> None:
        """Count the exact durations into the bins (the sketch is binned from then on)."""
        if not self.exact:
            return
        us = self.exact[0] if len(self.exact) == 1 else np.concatenate(self.exact)
        self.exact, self.exact_count = [], 0
        # Under 1 µs (MIN_VALUE) is the zero bin, as ``bin_of`` has it.
        ms = us[us >= 1] / _US_PER_MS
        self.zero_count += len(us) - len(ms)
        self.has_bins = True
        if not len(ms):
            return
        keys = np.ceil(np.log(ms) / _GAMMA_LOG).astype(np.int64)
        low, high = int(keys.min()), int(keys.max())
        self._cover(low, high)
        self.counts[low - self.offset : high - self.offset + 1] += np.bincount(keys - low).astype(np.uint64)

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

    def _exact_sorted(self) -> np.ndarray:
        if not self.exact:
            return np.zeros(0, dtype=np.uint32)
        return np.sort(self.exact[0] if len(self.exact) == 1 else np.concatenate(self.exact))

    def encode(self) -> bytes:
        if self.is_exact:
            return exact_encode(self._exact_sorted())
        self._fold()
        nonzero = np.flatnonzero(self.counts)
        if not len(nonzero):
            return _HEADER.pack(4, 0, self.zero_count)
        counts = self.counts[nonzero[0] : nonzero[-1] + 1]
        wide = int(counts.max()) >= 2**32
        return (
            _HEADER.pack(8 if wide else 4, self.offset + int(nonzero[0]), self.zero_count)
            + counts.astype("<u8" if wide else "<u4").tobytes()
        )

    def quantiles(self, qs: list[float]) -> list[float | None]:
        """The values at quantiles ``qs`` (0..1) by the nearest-rank rule (``rank_nearest``):
        exact while the sketch is, else the bin holding that rank, within 1 % of the exact
        value; never outside the min and max the rows keep."""
        if self.is_exact:
            ordered = self._exact_sorted()
            if not len(ordered):
                return [None for _ in qs]
            answers = [float(ordered[rank_nearest(q, len(ordered)) - 1]) / _US_PER_MS for q in qs]
        else:
            self._fold()
            total = int(self.counts.sum()) + self.zero_count
            if total == 0:
                return [None for _ in qs]
            # In floats: exact below 2**53 requests, and a zero count summed past 2**64 (rows
            # corrupted or merged over centuries) cannot overflow numpy's integers.
            cumulative = np.cumsum(self.counts, dtype=np.float64) + float(self.zero_count)
            answers = []
            for q in qs:
                rank = rank_nearest(q, total)
                if rank <= self.zero_count:
                    answers.append(0.0)
                    continue
                index = int(np.searchsorted(cumulative, rank, side="left"))
                answers.append(self.max if index >= len(cumulative) else bin_value(self.offset + index))
        if self.count:
            return [min(max(value, self.min), self.max) for value in answers]
        return answers

    def histogram(self, *, buckets: int = 30) -> list[tuple[float, float, int]]:
        """The distribution in at most ``buckets`` log-spaced bars: (low ms, high ms, count)."""
        source = self
        if self.exact:
            # Binned on a copy: an exact sketch stays exact for the percentiles read after.
            source = Sketch(offset=self.offset, counts=self.counts.copy(), zero_count=self.zero_count,
                            exact=list(self.exact), exact_count=self.exact_count)  # fmt: skip
            source._fold()
        nonzero = np.flatnonzero(source.counts)
        if not len(nonzero):
            return [(0.0, MIN_VALUE, source.zero_count)] if source.zero_count else []
        first, last = int(nonzero[0]), int(nonzero[-1])
        width = max(1, math.ceil((last - first + 1) / buckets))
        bars = []
        for start in range(first, last + 1, width):
            n = int(source.counts[start : start + width].sum())
            low = GAMMA ** (source.offset + start - 1)
            high = GAMMA ** (source.offset + start + width - 1)
            bars.append((low, high, n))
        if source.zero_count:
            bars.insert(0, (0.0, MIN_VALUE, source.zero_count))
        return bars


def sketch_encode(*, bins: dict[int, int], zero_count: int) -> bytes:
    sketch = Sketch()
    sketch.add_bins(bins, zero_count)
    return sketch.encode()


def sketch_of(values: list[float]) -> Sketch:
    """A sketch of raw durations (exact up to ``EXACT_MAX`` of them), with their stats."""
    sketch = Sketch()
    sketch.add_values(values)
    if values:
        sketch.add_stats(count=len(values), total=float(sum(values)), minimum=min(values), maximum=max(values))
    return sketch
