"""POST .../transactions/: both dialects are taken (202), refused with a JSON reason otherwise,
and what lands on the queue is the compact form, not the raw durations."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from tests.performance.conftest import TRANSACTION_FIXTURES

pytestmark = pytest.mark.django_db


def agent_body(durations: list[float], name: str = "GET /orders/<int:pk>/", result=200) -> dict:
    from opbeat_agent.sketch import DurationSketch

    sketch = DurationSketch.of(durations)
    return {
        "histograms": [
            {
                "transaction": name, "result": result, "kind": "request", "timestamp": "2026-11-26T00:40:00Z",
                "count": sketch.count, "sum": sketch.sum, "min": sketch.min, "max": sketch.max, "sketch": sketch.to_dict(),
            }
        ],
        "traces": [],
    }  # fmt: skip


@pytest.mark.parametrize("path", TRANSACTION_FIXTURES, ids=lambda p: p.stem)
def test_captured_original_bodies_are_accepted_and_queued_as_sketches(perf, path):
    sent = json.loads(path.with_suffix(".json").read_text())
    response = perf.post(path.read_bytes(), headers={"User-Agent": "opbeat-python/3.6.1"})
    assert response.status_code == 202, response.content
    assert response["Location"].endswith(f"/orgs/{perf.organization.public_id}/apps/{perf.app.public_id}/performance/")
    answer = response.json()
    assert answer["transactions"] == sum(len(t["durations"]) for t in sent["transactions"])
    (envelope,) = perf.broker.envelopes()
    assert envelope["kind"] == "transactions" and envelope["app_id"] == perf.app.pk
    groups = envelope["data"]["groups"]
    assert sum(group["count"] for group in groups) == answer["transactions"]
    assert all("durations" not in group for group in groups)
    total = sum(sum(t["durations"]) for t in sent["transactions"])
    assert abs(sum(group["sum"] for group in groups) - total) < 1e-6


def test_agent_body_is_accepted(perf):
    response = perf.post_agent(agent_body([12.0, 15.5, 40.25]))
    assert response.status_code == 202, response.content
    (envelope,) = perf.broker.envelopes()
    (group,) = envelope["data"]["groups"]
    assert (group["count"], group["min"], group["max"]) == (3, 12.0, 40.25)


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"", 400, "empty body"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"foo": 1}', 400, "`transactions`"),
        (b'{"transactions": [{"transaction": "x", "timestamp": "2026-11-26T00:40:00Z", "durations": ["slow"]}]}', 400, "durations"),
        (b'{"transactions": [{"transaction": "x", "timestamp": "2026-11-26T00:40:00Z", "durations": [-1]}]}', 400, "durations"),
        (b'{"histograms": [{"transaction": "x", "timestamp": "2026-11-26T00:40:00Z", "count": 5, "sum": 1, "min": 1, "max": 1, "sketch": {"bins": [[0, 1]]}}]}', 400, "count is 5"),
    ],
)
def test_invalid_bodies_are_refused_with_a_reason(perf, body, status, words):
    response = perf.post(body)
    assert response.status_code == status
    assert words in response.json()["error"]
    assert perf.broker.envelopes() == []


def test_a_wrong_token_is_refused_like_for_errors(perf):
    response = perf.post(zlib.compress(b'{"transactions": []}'), token="wrong")
    assert response.status_code == 403


def test_a_body_over_the_compressed_cap_is_413_before_parsing(perf, settings):
    settings.OPBEAT_LIMITS = {**settings.OPBEAT_LIMITS, "max_transactions_compressed_bytes": 1000}
    response = perf.post(b"x" * 5000)
    assert response.status_code == 413


def test_a_bomb_is_refused_at_the_decompressed_cap(perf, settings):
    settings.OPBEAT_LIMITS = {**settings.OPBEAT_LIMITS, "max_transactions_bytes": 100_000}
    body = gzip.compress(b'{"transactions": [' + b" " * 5_000_000 + b"]}")
    response = perf.post(body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413


def test_a_busy_minute_of_the_original_agent_fits_and_queues_small(perf):
    # ~600 requests/s for a minute, every duration listed, as the original module sends it.
    durations = [round(5 + (i * 7919 % 1000) / 10, 3) for i in range(36_000)]
    body = {"transactions": [{"transaction": "GET /busy", "result": 200, "timestamp": "2026-11-26T00:40:00Z", "durations": durations}], "traces": []}
    raw = json.dumps(body).encode()
    assert len(zlib.compress(raw)) < 4 * 1024 * 1024
    response = perf.post_original(body)
    assert response.status_code == 202
    (envelope,) = perf.broker.envelopes()
    assert envelope["data"]["groups"][0]["count"] == 36_000
    assert len(json.dumps(envelope)) < 20_000


def test_query_budget_cold_one_warm_zero(perf, django_assert_max_num_queries):
    body = agent_body([12.0, 15.5])
    with django_assert_max_num_queries(1):
        assert perf.post_agent(body).status_code == 202
    with django_assert_max_num_queries(0):
        assert perf.post_agent(body).status_code == 202
        assert perf.post_original({"transactions": [], "traces": []}).status_code == 202


def test_over_quota_is_429_with_retry_after(perf):
    perf.app.events_per_minute = 2
    perf.app.save()
    responses = [perf.post_agent(agent_body([10.0])) for _ in range(4)]
    assert [r.status_code for r in responses[:2]] == [202, 202]
    refused = [r for r in responses[2:] if r.status_code == 429]
    assert refused and int(refused[0]["Retry-After"]) > 0
