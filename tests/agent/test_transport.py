"""The HTTP transport against a stand-in intake over real sockets: what goes on the wire, and what
happens when the intake is down, slow, failing or pushing back.

No assertion here bounds how long something took (the machine is shared); "the app did not wait"
is shown structurally: the capture returned while the intake was still holding the request.
The one timing check is a lower bound (Retry-After honoured), which slowness cannot break.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from opbeat_agent.transport import retry_after_seconds

from .support import Answer, IntakeDouble, free_port

AGENT_DIR = Path(__file__).resolve().parents[2] / "agent"


def test_an_error_goes_out_as_gzip_json_with_the_bearer_token(intake, http_client_factory):
    client = http_client_factory(intake.url)
    try:
        1 / 0
    except ZeroDivisionError:
        event_id = client.capture_exception()
    assert client.flush(10)

    [request] = intake.received
    assert request.path == "/api/v1/organizations/org1/apps/app1/errors/"
    assert request.headers["authorization"] == "Bearer sekrit-token"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("opbeat-agent/")
    assert request.body["client_supplied_id"] == event_id
    assert request.body["exception"]["type"] == "ZeroDivisionError"
    assert client.transport.last_location == f"{intake.url}/events/{event_id}/"
    assert client.transport.stats()["sent"] == 1


def test_transactions_go_to_their_own_endpoint(intake, http_client_factory):
    client = http_client_factory(intake.url)
    client.begin_transaction("request")
    client.end_transaction("GET /orders/", 200)
    assert client.flush(10)
    [request] = [r for r in intake.received if r.path.endswith("/transactions/")]
    assert request.path == "/api/v1/organizations/org1/apps/app1/transactions/"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["authorization"] == "Bearer sekrit-token"
    [histogram] = request.body["histograms"]
    assert (histogram["transaction"], histogram["result"], histogram["count"]) == ("GET /orders/", 200, 1)
    assert client.transport.stats()["transactions_sent"] == 1


def test_a_server_without_the_transactions_endpoint_warns_once(intake, http_client_factory, caplog):
    intake.answer(Answer(404), Answer(404))
    client = http_client_factory(intake.url)
    for _ in range(2):
        client.begin_transaction("request")
        client.end_transaction("GET /", 200)
        assert client.flush(10)
    assert [r.status for r in intake.received] == [404, 404]
    assert caplog.text.count("intake rejected a transactions body with 404") == 1
    client.capture_message("errors still go")
    assert client.flush(10)
    assert [b["message"] for b in intake.accepted()] == ["errors still go"]


def test_a_burst_is_sent_over_one_connection_in_order(intake, http_client_factory):
    client = http_client_factory(intake.url)
    for n in range(20):
        client.capture_message("event %s", (n,))
    assert client.flush(10)
    assert [b["message"] for b in intake.accepted()] == [f"event {n}" for n in range(20)]


def test_intake_down_then_up_delivers_what_was_buffered(http_client_factory):
    port = free_port()
    client = http_client_factory(f"http://127.0.0.1:{port}")
    for n in range(3):
        client.capture_message("while down %s", (n,))
    # Nothing listens: the transport retries in the background; the flush gives up, the app never waited.
    assert client.flush(0.5) is False
    assert client.transport.stats()["connection_errors"] >= 1

    intake = IntakeDouble(port=port).start()
    try:
        assert client.flush(10)
        assert [b["message"] for b in intake.accepted()] == ["while down 0", "while down 1", "while down 2"]
    finally:
        intake.stop()


def test_slow_intake_does_not_hold_the_app(intake, http_client_factory):
    intake.answer(Answer(hold=True))
    client = http_client_factory(intake.url)
    client.capture_message("first")
    assert intake.wait_for_in_flight(1)
    # The intake is sitting on the first request; the app keeps capturing and returning.
    for n in range(5):
        assert client.capture_message("during %s", (n,)) is not None
    assert intake.in_flight == 1 and len(intake.received) == 0
    intake.release()
    assert client.flush(10)
    assert [b["message"] for b in intake.accepted()] == ["first"] + [f"during {n}" for n in range(5)]


def test_server_errors_are_retried_with_backoff(intake, http_client_factory):
    intake.answer(Answer(500), Answer(502))
    client = http_client_factory(intake.url)
    client.capture_message("flaky")
    assert client.flush(10)
    assert [r.status for r in intake.received] == [500, 502, 202]
    assert client.transport.stats()["server_errors"] == 2


def test_an_event_the_server_keeps_failing_on_is_dropped_not_retried_forever(intake, http_client_factory):
    intake.answer(*[Answer(500)] * 3)
    client = http_client_factory(intake.url, max_attempts_on_server_error=3)
    client.capture_message("poison")
    client.capture_message("next")
    assert client.flush(10)
    assert [r.status for r in intake.received] == [500, 500, 500, 202]
    assert [b["message"] for b in intake.accepted()] == ["next"]
    assert client.transport.stats()["rejected"] == 1


def test_429_retry_after_is_honoured(intake, http_client_factory):
    intake.answer(Answer(429, {"Retry-After": "1"}))
    client = http_client_factory(intake.url)
    client.capture_message("rate limited")
    # A flush does not cut a server's Retry-After short (it does cut our own backoff).
    assert client.flush(10)
    first, second = intake.received
    assert (first.status, second.status) == (429, 202)
    assert second.at - first.at >= 0.95  # lower bound only: waiting longer is allowed
    assert client.transport.stats()["rate_limited"] == 1


def test_503_with_retry_after_then_delivered(intake, http_client_factory):
    intake.answer(Answer(503, {"Retry-After": "0"}), Answer(503))
    client = http_client_factory(intake.url)
    client.capture_message("queue down")
    assert client.flush(10)
    assert [r.status for r in intake.received] == [503, 503, 202]
    assert client.transport.stats()["unavailable"] == 2


def test_a_rejected_event_is_dropped_and_the_next_one_goes(intake, http_client_factory, caplog):
    intake.answer(Answer(400))
    client = http_client_factory(intake.url)
    client.capture_message("bad")
    client.capture_message("good")
    assert client.flush(10)
    assert [b["message"] for b in intake.accepted()] == ["good"]
    assert client.transport.stats()["rejected_400"] == 1
    assert "intake rejected an event with 400" in caplog.text


def test_a_full_queue_drops_and_counts_and_reports_the_drops(intake, http_client_factory):
    intake.answer(Answer(hold=True))
    client = http_client_factory(intake.url, max_queue_size=2, max_batch=1)
    client.capture_message("held")
    assert intake.wait_for_in_flight(1)
    for n in range(5):
        client.capture_message("burst %s", (n,))
    stats = client.transport.stats()
    # One event is in the worker's hands; two fit in the queue; three are dropped, counted.
    assert stats["dropped"] == 3 and stats["dropped_queue_full"] == 3
    intake.release()
    assert client.flush(10)
    assert [b["message"] for b in intake.accepted()] == ["held", "burst 0", "burst 1"]
    # The next request after the drops tells the intake how many it missed.
    assert intake.received[1].headers["x-opbeat-agent-dropped"] == "3"
    assert "x-opbeat-agent-dropped" not in intake.received[2].headers


def test_the_second_server_is_used_when_the_first_is_down(intake, http_client_factory):
    client = http_client_factory(f"http://127.0.0.1:{free_port()}")
    client.transport._servers.append(intake.url)
    client.capture_message("failover")
    assert client.flush(10)
    assert [b["message"] for b in intake.accepted()] == ["failover"]


def test_the_worker_restarts_in_a_forked_child(intake, http_client_factory):
    client = http_client_factory(intake.url)
    client.capture_message("parent before fork")
    client.begin_transaction("request")
    client.end_transaction("parent request", 200)
    assert client.flush(10)
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads are not here; sending must start new ones
        try:
            client.capture_message("from the child")
            client.begin_transaction("request")
            client.end_transaction("child request", 200)
            os._exit(0 if client.flush(10) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.capture_message("parent after fork")
    assert client.flush(10)
    assert sorted(b["message"] for b in intake.accepted()) == [
        "from the child",
        "parent after fork",
        "parent before fork",
    ]
    names = sorted(h["transaction"] for b in intake.accepted("transactions") for h in b["histograms"])
    assert names == ["child request", "parent request"]


def _run_script(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(AGENT_DIR)}
    # The timeout only guards the suite against a hang; the script's own bound is shutdown_timeout.
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=60)


def test_queued_errors_are_flushed_at_exit(intake):
    result = _run_script(f"""
        import opbeat_agent
        client = opbeat_agent.init(organization_id="o", app_id="a", secret_token="t", servers=["{intake.url}"])
        for n in range(3):
            client.capture_message("at exit %s", (n,))
            client.begin_transaction("task")
            client.end_transaction("nightly job", "success")
    """)
    assert result.returncode == 0, result.stderr
    assert sorted(b["message"] for b in intake.accepted()) == ["at exit 0", "at exit 1", "at exit 2"]
    # Transactions recorded just before exit are aggregated and sent too.
    assert sum(h["count"] for b in intake.accepted("transactions") for h in b["histograms"]) == 3


def test_exit_is_bounded_when_the_intake_is_down():
    result = _run_script(f"""
        import opbeat_agent
        client = opbeat_agent.init(organization_id="o", app_id="a", secret_token="t",
                                   servers=["http://127.0.0.1:{free_port()}"], shutdown_timeout=0.5)
        client.capture_message("lost")
    """)
    assert result.returncode == 0
    assert "1 event(s) not sent at exit after 0.5s" in result.stderr


def test_exit_is_bounded_when_the_intake_holds_the_request(intake):
    # The intake holds its answer for 5 s: had the process waited for it, the event would have
    # been answered 202 and no warning printed. It gives up after shutdown_timeout instead.
    intake.answer(Answer(hold=True))
    script = f"""
        import sys
        import opbeat_agent
        client = opbeat_agent.init(organization_id="o", app_id="a", secret_token="t",
                                   servers=["{intake.url}"], shutdown_timeout=0.5)
        client.capture_message("in flight at exit")
        sys.stdin.readline()  # exit once the test has seen the request arrive
    """
    env = {**os.environ, "PYTHONPATH": str(AGENT_DIR)}
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert intake.wait_for_in_flight(1)
        _, stderr = process.communicate("go\n", timeout=60)  # the timeout only guards against a hang
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "1 event(s) not sent at exit after 0.5s" in stderr
    assert intake.received == []  # still held when the process ended
    intake.release()


def test_exit_does_not_wait_out_a_long_retry_after(intake):
    # A Retry-After of an hour is honoured while the app runs, but not past the exit bound: the
    # process ends (here within the suite's hang guard) with both bodies counted as not sent.
    intake.answer(Answer(status=429, headers={"Retry-After": "3600"}))
    result = _run_script(f"""
        import time
        import opbeat_agent
        client = opbeat_agent.init(organization_id="o", app_id="a", secret_token="t",
                                   servers=["{intake.url}"], shutdown_timeout=0.5)
        client.capture_message("rate limited at exit")
        client.begin_transaction("task")
        client.end_transaction("nightly job", "success")
        while not client.transport.stats().get("rate_limited"):  # exit once the 429 has arrived
            time.sleep(0.01)
    """)
    assert result.returncode == 0, result.stderr
    assert "2 event(s) not sent at exit after 0.5s" in result.stderr  # the error and the transactions body
    assert [r.status for r in intake.received] == [429]


def test_retry_after_forms():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("-1") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
