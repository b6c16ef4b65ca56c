"""Transactions and spans: what the reporter hands the transport after a flush (the recording
transport keeps the transactions bodies it was given)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import opbeat_agent
from opbeat_agent import Client, MemoryTransport, trace

from .conftest import IDS


@pytest.fixture
def tx_client(recording):
    client = Client(**IDS, transport=recording, release="r7", environment="prod")
    yield client
    client.close(timeout=1)


def one_body(client: Client) -> dict:
    assert client.flush(10)
    [body] = client.transport.transactions
    return body


def counts(body: dict) -> dict:
    """Count per (transaction, result, kind), summed over minutes: a test may straddle a minute."""
    out: dict = {}
    for h in body["histograms"]:
        key = (h["transaction"], h["result"], h["kind"])
        out[key] = out.get(key, 0) + h["count"]
    return out


def test_histograms_per_name_result_and_minute(tx_client):
    for status in (200, 200, 200, 404):
        tx_client.begin_transaction("request")
        tx_client.end_transaction("GET /orders/<int:pk>/", status)
    tx_client.begin_transaction("task")
    tx_client.end_transaction("billing.charge", "success")

    body = one_body(tx_client)
    assert (body["organization_id"], body["app_id"], body["release"], body["environment"]) == ("org1", "app1", "r7", "prod")
    assert body["agent"]["name"] == "opbeat-agent"
    assert body["dropped"] == {"transactions": 0}
    assert counts(body) == {
        ("GET /orders/<int:pk>/", 200, "request"): 3,
        ("GET /orders/<int:pk>/", 404, "request"): 1,
        ("billing.charge", "success", "task"): 1,
    }
    for h in body["histograms"]:
        assert h["min"] <= h["sum"] / h["count"] <= h["max"]
        assert sum(n for _, n in h["sketch"]["bins"]) + h["sketch"]["zero_count"] == h["count"]
        assert h["timestamp"].endswith(":00Z")


def test_the_slowest_transaction_of_each_group_is_kept_whole_with_its_spans(tx_client):
    for pause in (0.0, 0.03, 0.0):
        tx_client.begin_transaction("request")
        with trace("SELECT FROM orders", "db.postgresql.sql", {"sql": "SELECT * FROM orders WHERE id = %s"}):
            with trace("render", "template"):
                time.sleep(pause)
        with trace("charge", "payment"):
            pass
        tx_client.end_transaction("GET /orders/", 200)

    body = one_body(tx_client)
    # One kept per group and minute; the slowest of all is the one that slept.
    sample = max(body["traces"], key=lambda t: t["duration"])
    assert sample["transaction"] == "GET /orders/" and sample["result"] == 200 and sample["kind"] == "request"
    assert sample["duration"] >= 30.0  # the slow one (sleep is a lower bound)
    spans = {s["signature"]: s for s in sample["spans"]}
    assert set(spans) == {"SELECT FROM orders", "render", "charge"}
    assert spans["SELECT FROM orders"]["parent"] == 0
    assert spans["render"]["parent"] == spans["SELECT FROM orders"]["id"]
    assert spans["charge"]["parent"] == 0
    assert spans["SELECT FROM orders"]["extra"] == {"sql": "SELECT * FROM orders WHERE id = %s"}
    assert spans["render"]["start"] >= spans["SELECT FROM orders"]["start"]
    assert spans["charge"]["start"] >= spans["render"]["start"] + spans["render"]["duration"] - 0.01
    # Slow spans say where they were started from; fast ones carry no stack.
    assert spans["render"]["stack"][-1]["function"] == "test_the_slowest_transaction_of_each_group_is_kept_whole_with_its_spans"
    assert "stack" not in spans["charge"]


def test_histograms_total_the_time_per_span_kind_over_every_transaction(tx_client):
    # Three requests, each with a template that runs a query inside it: the template's own time
    # excludes the query's, and "app" is what no span covers. The totals cover all three
    # transactions, not only the sampled one.
    for _ in range(3):
        tx_client.begin_transaction("request")
        with trace("render", "template.django"):
            time.sleep(0.002)
            with trace("SELECT FROM orders", "db.postgresql.sql"):
                time.sleep(0.004)
        time.sleep(0.001)
        tx_client.end_transaction("GET /orders/", 200)

    body = one_body(tx_client)
    histograms = [h for h in body["histograms"] if h["transaction"] == "GET /orders/"]
    base = sum(h["span_ms"]["base"] for h in histograms)
    kinds: dict = {}
    for h in histograms:
        for kind, ms in h["span_ms"]["kinds"].items():
            kinds[kind] = kinds.get(kind, 0.0) + ms
    assert base == pytest.approx(sum(h["sum"] for h in histograms), abs=0.01)
    assert set(kinds) == {"template.django", "db.postgresql.sql", "app"}
    assert sum(kinds.values()) == pytest.approx(base, abs=0.05)  # nothing counted twice
    assert kinds["db.postgresql.sql"] >= 3 * 4.0  # sleep is a lower bound
    assert kinds["template.django"] >= 3 * 2.0
    assert kinds["app"] >= 3 * 1.0


def test_trace_as_decorator_sync_and_async(tx_client):
    @trace()
    def load_user(user_id):
        return {"id": user_id}

    @trace("fetch prices", kind="ext.http")
    async def fetch():
        await asyncio.sleep(0)
        return 3

    tx_client.begin_transaction("request")
    assert load_user(5) == {"id": 5}
    assert asyncio.run(fetch()) == 3
    tx_client.end_transaction("GET /", 200)
    spans = one_body(tx_client)["traces"][0]["spans"]
    assert [(s["signature"], s["kind"]) for s in spans] == [
        ("test_trace_as_decorator_sync_and_async.<locals>.load_user", "code.custom"),
        ("fetch prices", "ext.http"),
    ]


def test_trace_outside_a_transaction_is_a_no_op(tx_client):
    with trace("nothing"):
        value = 1
    assert value == 1
    assert tx_client.flush(5) and tx_client.transport.transactions == []


def test_spans_beyond_the_cap_are_counted(recording):
    client = Client(**IDS, transport=recording, transaction_max_spans=3)
    client.begin_transaction("request")
    for n in range(5):
        with trace(f"step {n}"):
            pass
    client.end_transaction("GET /", 200)
    sample = one_body(client)["traces"][0]
    assert [s["signature"] for s in sample["spans"]] == ["step 0", "step 1", "step 2"]
    assert sample["spans_dropped"] == 2
    client.close(timeout=1)


def test_groups_beyond_the_cap_are_counted_as_dropped():
    # The aggregator itself, with transactions of a fixed minute, so the cap is what is tested.
    from opbeat_agent.aggregation import TransactionsAggregator
    from opbeat_agent.tracing import Transaction

    aggregator = TransactionsAggregator(relative_accuracy=0.01, traces_per_group=1, max_groups=2)
    for name in ("a", "b", "c", "a"):
        transaction = Transaction("request", max_spans=10, stack_min_ms=5.0, stack_max_frames=5)
        transaction.timestamp = 1_790_000_000.0
        transaction.end()
        transaction.name, transaction.result = name, 200
        aggregator.add(transaction)
    parts = aggregator.drain()
    assert sorted((h["transaction"], h["count"]) for h in parts["histograms"]) == [("a", 2), ("b", 1)]
    assert parts["dropped_groups"] == 1
    assert {h["timestamp"] for h in parts["histograms"]} == {"2026-09-21T14:13:00Z"}
    assert aggregator.drain() is None


def test_name_set_during_the_transaction(tx_client):
    tx_client.begin_transaction("worker")
    opbeat_agent.transaction_name_set("poll inbox")
    tx_client.end_transaction(result="ok")
    assert counts(one_body(tx_client)) == {("poll inbox", "ok", "worker"): 1}


def test_threads_and_tasks_each_have_their_own_transaction(tx_client):
    barrier = threading.Barrier(4)

    def work(n):
        tx_client.begin_transaction("request")
        barrier.wait()  # all four transactions are open at once
        with trace(f"span of {n}"):
            pass
        tx_client.end_transaction(f"job {n}", 200)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def handler(n):
        tx_client.begin_transaction("request")
        await asyncio.sleep(0)
        with trace(f"async span of {n}"):
            await asyncio.sleep(0)
        tx_client.end_transaction(f"async {n}", 200)

    async def main():
        await asyncio.gather(*(asyncio.create_task(handler(n)) for n in range(3)))

    asyncio.run(main())
    traces = {t["transaction"]: [s["signature"] for s in t["spans"]] for t in one_body(tx_client)["traces"]}
    assert traces == {
        **{f"job {n}": [f"span of {n}"] for n in range(4)},
        **{f"async {n}": [f"async span of {n}"] for n in range(3)},
    }


def test_end_without_begin_and_disabled_transactions(recording):
    client = Client(**IDS, transport=recording, transactions_enabled=False)
    assert client.begin_transaction() is None
    assert client.end_transaction("x", 200) is None
    other = Client(**IDS, transport=MemoryTransport())
    assert other.end_transaction("never begun", 200) is None
    assert other.flush(5) and other.transport.transactions == []


def test_global_begin_and_end(recording):
    assert opbeat_agent.begin_transaction("worker") is None  # no client yet: a no-op
    client = opbeat_agent.init(**IDS, transport=recording)
    opbeat_agent.begin_transaction("worker")
    with trace("poll"):
        pass
    opbeat_agent.end_transaction("inbox loop", "ok")
    assert counts(one_body(client)) == {("inbox loop", "ok", "worker"): 1}
    client.close(timeout=1)


class HoldingTransport(MemoryTransport):
    """A recording transport whose ``send_transactions`` waits until released: the reporter's
    thread is then busy, and what the app records piles up in its queue."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.released = threading.Event()

    def send_transactions(self, body: dict) -> None:
        self.entered.set()
        self.released.wait(10)
        super().send_transactions(body)


def test_over_half_full_queue_sheds_spans_and_a_full_one_drops_transactions():
    transport = HoldingTransport()
    client = Client(**IDS, transport=transport, transaction_queue_size=4, transactions_interval=3600)

    def request(name: str) -> None:
        client.begin_transaction("request")
        for n in range(3):
            with trace(f"query {n}", "db.sqlite.sql"):
                pass
        client.end_transaction(name, 200)

    request("before")
    client.flush(timeout=0)  # the reporter takes it and sends: held there from now on
    assert transport.entered.wait(10)
    # Queue of 4: the first three find it at most half full and keep their spans; the fourth
    # finds three waiting and keeps only its timing; the fifth finds it full and is dropped.
    for n in range(5):
        request(f"queued {n}")
    transport.released.set()
    assert client.flush(10)
    traces = {t["transaction"]: t for body in transport.transactions for t in body["traces"]}
    assert sorted(traces) == ["before", "queued 0", "queued 1", "queued 2", "queued 3"]
    for name in ("before", "queued 0", "queued 1", "queued 2"):
        assert [s["signature"] for s in traces[name]["spans"]] == ["query 0", "query 1", "query 2"]
        assert traces[name]["spans_dropped"] == 0
    assert traces["queued 3"]["spans"] == [] and traces["queued 3"]["spans_dropped"] == 3
    counted = {h["transaction"]: h["count"] for body in transport.transactions for h in body["histograms"]}
    assert counted["queued 3"] == 1 and "queued 4" not in counted  # the shed one still counts
    assert sum(body["dropped"]["transactions"] for body in transport.transactions) == 1
    client.close(timeout=1)
