"""The example Flask app with the agent's real HTTP transport, against a stand-in intake that is
down, slow, failing or pushing back: the app's requests are answered as if the agent were not
there (its own 500 for /error, 200 for /), nothing from the agent raises into it, and once the
intake answers 202 every buffered error arrives.

"The app did not wait" is shown without a clock: each response comes back while the intake is
still down, or still holding the agent's first request.
"""

from __future__ import annotations

import pytest

pytest.importorskip("flask")

import opbeat_agent  # noqa: E402
from tests.agent.support import Answer, IntakeDouble, free_port  # noqa: E402

from .flask_app import create_app  # noqa: E402


@pytest.fixture
def make_app():
    opbeat_agent.set_client(None)
    clients = []

    def make(url: str):
        app = create_app(
            ORGANIZATION_ID="org1", APP_ID="app1", SECRET_TOKEN="sekrit-token", SERVERS=[url],
            RETRY_BACKOFF_BASE=0.05, RETRY_BACKOFF_MAX=0.2, INSTRUMENT=False,
        )
        clients.append(app.extensions["opbeat_agent"].client)
        return app.test_client(), clients[-1]

    yield make
    for client in clients:
        client.close(timeout=0)
    opbeat_agent.set_client(None)


def hit(browser, n: int = 3) -> None:
    for _ in range(n):
        assert browser.get("/error").status_code == 500
        assert browser.get("/").data == b"ok"


def test_intake_down(make_app):
    port = free_port()
    browser, client = make_app(f"http://127.0.0.1:{port}")
    hit(browser)
    assert client.flush(0.3) is False  # still nobody listening: buffered
    intake = IntakeDouble(port=port).start()
    try:
        assert client.flush(10)
        assert len(intake.accepted()) == 3
        assert all(e["exception"]["type"] == "ZeroDivisionError" for e in intake.accepted())
    finally:
        intake.stop()


def test_intake_slow(make_app, intake):
    intake.answer(Answer(hold=True))  # holds its answer up to 5 s, until released
    browser, client = make_app(intake.url)
    assert browser.get("/error").status_code == 500
    assert intake.wait_for_in_flight(1)
    hit(browser)
    assert intake.in_flight == 1 and intake.received == []
    intake.release()
    assert client.flush(10)
    assert len(intake.accepted()) == 4


@pytest.mark.parametrize(
    "answers,statuses",
    [
        ([Answer(500), Answer(500)], [500, 500, 202, 202, 202]),
        ([Answer(429, {"Retry-After": "1"})], [429, 202, 202, 202]),
        ([Answer(503, {"Retry-After": "1"})], [503, 202, 202, 202]),
        ([Answer(503)], [503, 202, 202, 202]),
    ],
    ids=["500", "429-retry-after", "503-retry-after", "503"],
)
def test_intake_failing_then_recovering(make_app, intake, answers, statuses):
    intake.answer(*answers)
    browser, client = make_app(intake.url)
    hit(browser)
    assert client.flush(10)
    errors = [r for r in intake.received if r.path.endswith("/errors/")]
    assert [r.status for r in errors] == statuses
    assert len(intake.accepted()) == 3
    if answers[0].headers.get("Retry-After"):
        # Lower bound only: the agent waited at least what the intake asked for.
        assert errors[1].at - errors[0].at >= 0.95
    # The requests were recorded as transactions too, and arrived once the intake recovered.
    [body] = intake.accepted("transactions")
    counts: dict = {}
    for h in body["histograms"]:  # summed over minutes: the test may straddle one
        counts[(h["transaction"], h["result"])] = counts.get((h["transaction"], h["result"]), 0) + h["count"]
    assert counts == {("GET /error", 500): 3, ("GET /", 200): 3}
