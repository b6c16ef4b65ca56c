"""The duration sketch: quantiles within 1% of the exact ones, and merging loses nothing."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from opbeat_agent.sketch import DurationSketch


def exact_quantile(values: list, q: float) -> float:
    """Nearest rank: the value at rank ceil(q * n), 1-based."""
    ordered = sorted(values)
    return ordered[max(math.ceil(Fraction(str(q)) * len(ordered)), 1) - 1]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_are_within_one_percent(seed):
    rng = random.Random(seed)
    # Request durations are long-tailed: log-normal around 20 ms with a tail past a second,
    # plus a cluster of fast cache hits.
    values = [rng.lognormvariate(math.log(20), 1.2) for _ in range(20_000)]
    values += [rng.uniform(0.05, 0.3) for _ in range(2_000)]
    sketch = DurationSketch.of(values)
    for q in (0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = exact_quantile(values, q)
        assert abs(sketch.quantile(q) - exact) <= 0.01 * exact, q
    assert sketch.count == len(values)
    assert sketch.sum == pytest.approx(sum(values))
    assert (sketch.min, sketch.max) == (min(values), max(values))


def test_merging_equals_sketching_everything_at_once():
    rng = random.Random(7)
    parts = [[rng.expovariate(1 / 30) for _ in range(1_000)] for _ in range(4)]
    merged = DurationSketch()
    for part in parts:
        merged.merge(DurationSketch.of(part))
    whole = DurationSketch.of([v for part in parts for v in part])
    assert merged.to_dict() == whole.to_dict()
    assert merged.count == whole.count and merged.sum == pytest.approx(whole.sum)
    assert merged.quantile(0.99) == whole.quantile(0.99)


def test_wire_form_round_trips():
    sketch = DurationSketch.of([0.0, 0.0005, 1.0, 2.5, 2.5, 1000.0])
    data = sketch.to_dict()
    assert data["zero_count"] == 2 and data["relative_accuracy"] == 0.01
    assert sum(n for _, n in data["bins"]) == 4
    assert [k for k, _ in data["bins"]] == sorted(k for k, _ in data["bins"])
    back = DurationSketch.from_dict(data, count=sketch.count, total=sketch.sum, minimum=sketch.min, maximum=sketch.max)
    assert back.quantile(0.5) == sketch.quantile(0.5)
    assert back.quantile(0.1) == 0.0


def test_different_accuracies_do_not_merge():
    with pytest.raises(ValueError):
        DurationSketch(0.01).merge(DurationSketch(0.02))


def test_empty_sketch():
    assert DurationSketch().quantile(0.5) is None


def test_a_few_durations_are_kept_and_read_exactly_by_nearest_rank():
    sketch = DurationSketch.of([52.65, 22.68])
    assert [sketch.quantile(q) for q in (0.5, 0.95, 0.99)] == [22.68, 52.65, 52.65]
    rng = random.Random(5)
    parts = [[round(rng.expovariate(1 / 30), 3) for _ in range(100)] for _ in range(3)]
    merged = DurationSketch.of(parts[0])
    merged.merge(DurationSketch.of(parts[1]))
    values = parts[0] + parts[1]
    assert sorted(merged.to_dict()["values"]) == sorted(values)
    for q in (0.01, 0.5, 0.9, 0.95, 0.99, 1.0):
        assert merged.quantile(q) == exact_quantile(values, q), q
    merged.merge(DurationSketch.of(parts[2]))  # 300 durations: bins only from now on
    assert "values" not in merged.to_dict() and merged.count == 300
    back = DurationSketch.from_dict(
        DurationSketch.of(parts[0]).to_dict(), count=100, total=sum(parts[0]), minimum=min(parts[0]), maximum=max(parts[0])
    )
    assert back.quantile(0.99) == exact_quantile(parts[0], 0.99)
