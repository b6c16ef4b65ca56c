"""The releases pages' figures as a member reads them: errors per hour before and after each
deploy, in the release's own environment, each event counted on the side of the deploy its own
time falls on (events on both sides of a deploy within one hour, in two environments), checked
against counts made here from the raw events; and a release's per-endpoint p95 before and after
in its environment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from processing.digest import events_digest
from processing.releases import release_store
from tests.dashboards.rows import hour_of
from tests.performance.conftest import broker, exact_quantile, intake_state_clean, perf  # noqa: F401
from tests.processing.helpers import envelope

HOUR = timedelta(hours=1)
WINDOW = timedelta(hours=24)


@dataclass
class Sent:
    environment: str
    at: datetime


def send(app, events: list[Sent]) -> None:
    envelopes = [
        envelope(app, {"message": f"failure {index % 3}", "level": "error", "environment": item.environment}, at=item.at)
        for index, item in enumerate(events)
    ]
    assert events_digest(envelopes=envelopes).stored == len(events)


def expected_rates(events: list[Sent], *, environment: str, deploy: datetime, end: datetime) -> tuple[float, float]:
    """What the page must say, from the raw events: per hour over the 24 h before the deploy, and
    from the deploy to ``end`` (at least one hour)."""
    mine = [item.at for item in events if item.environment == environment]
    before = sum(1 for at in mine if deploy - WINDOW <= at < deploy)
    after = sum(1 for at in mine if deploy <= at < end)
    return before / 24, after / max((end - deploy) / HOUR, 1.0)


def shown_rates(html: str) -> dict[str, tuple[float | None, float | None]]:
    """{version: (before, after)} as the releases page shows them."""
    def number(text: str) -> float | None:
        return None if text.strip() == "—" else float(text)

    return {
        version: (number(before), number(after))
        for version, before, after in re.findall(
            r'<code>([^<]+)</code></a></td>.*?<td class="rates">([^<]*) → ([^<]*)</td>', html, re.S
        )
    }


def assert_rates(shown: tuple, expected: tuple, what: str) -> None:
    # The page rounds to 2 decimals; the last release's window ends at the page's own "now".
    for side, value, exact in zip(("before", "after"), shown, expected):
        assert value is not None and abs(value - exact) <= 0.006, f"{what} {side}: page shows {value}, counted {exact:.4f}"


@pytest.fixture
def deploys(member):
    """Production v1 at 25'30" into an hour three hours ago, staging s1 four minutes later in the
    same hour, production v2 90 minutes after v1; events on both sides of each within seconds."""
    now = timezone.now()
    v1_at = hour_of(now - 3 * HOUR) + timedelta(minutes=25, seconds=30)
    s1_at = v1_at + timedelta(minutes=4)
    v2_at = v1_at + timedelta(minutes=90)
    for version, environment, at in (("v1", "production", v1_at), ("s1", "staging", s1_at), ("v2", "production", v2_at)):
        release_store(app=member.app, version=version, environment=environment, deployed_at=at, commits=[])
    seconds = [-25 * 3600, -23 * 3600, -20 * 60, -61, -10, -1, 1, 20, 600, 80 * 60, 100 * 60, 101 * 60]
    events = [Sent("production", v1_at + timedelta(seconds=offset)) for offset in seconds]
    events += [Sent("staging", s1_at + timedelta(seconds=offset)) for offset in (-30 * 60, -181, -2, -1, 1, 2, 3, 59 * 60)]
    events += [Sent("", v1_at + timedelta(seconds=offset)) for offset in (-5, 5)]
    send(member.app, events)
    return {"now": now, "events": events, "v1": v1_at, "s1": s1_at, "v2": v2_at}


def test_errors_per_hour_before_and_after_each_deploy_in_its_environment(member, deploys):
    html = member.client.get(member.url("release_list")).content.decode()
    shown = shown_rates(html)
    events, now = deploys["events"], timezone.now()
    v1, s1, v2 = deploys["v1"], deploys["s1"], deploys["v2"]
    assert_rates(shown["v1"], expected_rates(events, environment="production", deploy=v1, end=v2), "v1")
    assert_rates(shown["v2"], expected_rates(events, environment="production", deploy=v2, end=now), "v2")
    assert_rates(shown["s1"], expected_rates(events, environment="staging", deploy=s1, end=now), "s1")
    # Not the hour buckets: v1's deploy hour holds errors on both sides, and none of staging's.
    assert shown["v1"][1] > 0 and shown["s1"][1] > 0
    assert "Each event counts on the side of the deploy its own time falls on" in html


def test_a_release_page_shows_its_errors_per_hour(member, deploys):
    from processing.models import Release

    release = Release.objects.get(app=member.app, version="s1")
    html = member.client.get(member.url("release_detail", release.id)).content.decode()
    match = re.search(r'<span class="rates">([^<]*) → ([^<]*)</span>', html)
    assert match, "no rates on the release page"
    expected = expected_rates(deploys["events"], environment="staging", deploy=deploys["s1"], end=timezone.now())
    assert_rates((float(match.group(1)), float(match.group(2))), expected, "s1 page")
    assert "Errors per hour before → after in staging" in html


def test_release_list_filters_by_environment(member, deploys):
    staging = member.client.get(member.url("release_list") + "?environment=staging").content.decode()
    assert set(shown_rates(staging)) == {"s1"}
    # Remembered: the next visit without the parameter is still staging; "All" shows every one.
    assert set(shown_rates(member.client.get(member.url("release_list")).content.decode())) == {"s1"}
    everything = member.client.get(member.url("release_list") + "?environment=").content.decode()
    assert set(shown_rates(everything)) == {"v1", "v2", "s1"}


def test_release_list_query_budget_does_not_grow_with_releases(member, django_assert_max_num_queries):
    now = timezone.now()
    for index in range(3):
        release_store(app=member.app, version=f"r{index}", environment="production", deployed_at=now - (index + 1) * HOUR, commits=[])

    def budget() -> int:
        count = 0
        # session, user, app, remembered environment, environment names, releases, authors, new
        # issues, regressed, next deploys; then per release the minute counts and the edge events.
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert member.client.get(member.url("release_list")).status_code == 200
        count = len(captured.captured_queries)
        return count

    three = budget()
    for index in range(3, 9):
        release_store(app=member.app, version=f"r{index}", environment="production", deployed_at=now - (index + 1) * HOUR, commits=[])
    nine = budget()
    assert nine - three <= 2 * 6, (three, nine)
    with django_assert_max_num_queries(10 + 2 * 9):
        assert member.client.get(member.url("release_list")).status_code == 200


def test_release_page_p95_before_and_after_in_its_environment(perf):
    """Production fast before and slow after its deploy; staging slow all along: production's
    release shows production's p95 only."""
    from opbeat_agent.sketch import DurationSketch

    from processing.models import Release

    now = timezone.now().replace(second=0, microsecond=0)
    deploy = now - timedelta(minutes=30)
    release_store(app=perf.app, version="p1", environment="production", deployed_at=deploy, commits=[])
    release_store(app=perf.app, version="q1", environment="qa", deployed_at=deploy, commits=[])
    sent: dict[tuple[str, str], list[float]] = {}
    for environment, side, minute, values in (
        ("production", "before", deploy - timedelta(minutes=10), [10.0 + index % 7 for index in range(200)]),
        ("production", "after", deploy + timedelta(minutes=10), [40.0 + index % 11 for index in range(200)]),
        ("staging", "before", deploy - timedelta(minutes=10), [900.0 + index for index in range(50)]),
        ("staging", "after", deploy + timedelta(minutes=10), [950.0 + index for index in range(50)]),
    ):
        sent[(environment, side)] = values
        sketch = DurationSketch.of(values)
        body = {
            "machine": {"hostname": "web-1"}, "environment": environment,
            "histograms": [{
                "transaction": "GET /checkout/", "result": 200, "kind": "request",
                "timestamp": minute.strftime("%Y-%m-%dT%H:%M:00Z"),
                "count": sketch.count, "sum": sketch.sum, "min": sketch.min, "max": sketch.max, "sketch": sketch.to_dict(),
            }],
        }  # fmt: skip
        assert perf.post_agent(body).status_code == 202
    perf.work()

    def p95s(version: str) -> tuple[float, float]:
        release = Release.objects.get(app=perf.app, version=version)
        html = perf.page("release_detail", release.id)
        match = re.search(r"<td>GET /checkout/</td><td>([0-9.,]+) ms</td><td>([0-9.,]+) ms</td>", html)
        assert match, html[html.find("Endpoints") : html.find("Endpoints") + 600]
        return float(match.group(1).replace(",", "")), float(match.group(2).replace(",", "")), html

    before, after, html = p95s("p1")
    assert "p95 before → after in production" in html
    for shown, exact in ((before, exact_quantile(sent[("production", "before")], 0.95)), (after, exact_quantile(sent[("production", "after")], 0.95))):
        assert abs(shown - exact) <= 0.01 * exact + 0.1, (shown, exact)
    # No transaction names "qa": its release shows every environment's, and says so.
    before, after, html = p95s("q1")
    assert "the transactions name no environment qa" in html
    assert before > exact_quantile(sent[("production", "before")], 0.95) * 10
