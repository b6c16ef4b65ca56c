"""Environments kept apart on every page a member reads: the issue list, an issue, the
performance overview and a transaction's page take ``?environment=NAME`` (empty: all), remember
the member's last choice per app, and show figures counted here from the raw events and
transactions sent through the worker's own code. Another organization's app is a 404 whatever
the parameter, and its remembered choice is neither read nor written."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboards.models import EnvironmentChoice
from processing.digest import events_digest
from processing.models import Issue, TransactionName
from tests.factories import org_app_create
from tests.performance.conftest import broker, figure, intake_state_clean, perf  # noqa: F401
from tests.processing.helpers import envelope

# (message, environment, minutes ago): three issues; "Disk full" only in staging.
SENT = (
    [("Payment failed", "production", minutes) for minutes in (1, 2, 3, 5, 8, 13, 21)]
    + [("Payment failed", "staging", minutes) for minutes in (4, 6)]
    + [("Payment failed", "", 7)]
    + [("Disk full", "staging", minutes) for minutes in (9, 10, 11)]
    + [("Timeout talking to bank", "production", minutes) for minutes in (30, 40)]
)


def sent_envelopes(app) -> list[dict]:
    now = timezone.now()
    return [
        envelope(app, {"message": message, "level": "error", "environment": environment}, at=now - timedelta(minutes=minutes))
        for message, environment, minutes in SENT
    ]


def counted(environment: str = "") -> Counter:
    """Events per issue title in ``environment`` ("" all), from what was sent."""
    return Counter(message for message, env, _ in SENT if not environment or env == environment)


def issue_rows(html: str) -> dict[str, int]:
    """{title: events} as the issue list shows them."""
    return {
        title: int(events.replace(",", ""))
        for title, events in re.findall(
            r'<td class="title">\s*<a href="[^"]+">([^<]+)</a>.*?</td>\s*<td class="num">([\d,]+)</td>', html, re.S
        )
    }


def current_environment(html: str) -> str:
    match = re.search(r'<strong class="environment current">([^<]+)</strong>', html)
    assert match, "no environment selector on the page"
    return match.group(1)


@pytest.fixture
def digested(member):
    envelopes = sent_envelopes(member.app)
    assert events_digest(envelopes=envelopes).stored == len(SENT)
    # Redelivered: counted once.
    assert events_digest(envelopes=envelopes).stored == 0
    return {issue.title: issue for issue in Issue.objects.filter(app=member.app)}


def test_issue_list_filters_by_environment_with_that_environments_counts(member, digested):
    everything = member.client.get(member.url("issue_list")).content.decode()
    assert issue_rows(everything) == dict(counted())
    assert current_environment(everything) == "All"
    for environment in ("production", "staging"):
        html = member.client.get(member.url("issue_list"), {"environment": environment}).content.decode()
        assert issue_rows(html) == dict(counted(environment)), environment
        assert current_environment(html) == environment
        # The app chart counts that environment's events only (all of them are in the last 24 h).
        assert f"{sum(counted(environment).values())} events in the last 24h" in html
    # The selector lists the environments events named, each a plain link.
    assert 'href="?status=unresolved&amp;sort=last_seen&amp;range=24h&amp;environment=production"' in html
    assert 'href="?status=unresolved&amp;sort=last_seen&amp;range=24h&amp;environment="' in html


def test_the_choice_is_remembered_per_app_until_all_is_chosen(member, digested):
    _, _, second_app = org_app_create(owner=member.user, org_name="Second")
    member.client.get(member.url("issue_list"), {"environment": "staging"})
    # Opened without the parameter: still staging, on this app's other pages too.
    html = member.client.get(member.url("issue_list")).content.decode()
    assert current_environment(html) == "staging"
    assert issue_rows(html) == dict(counted("staging"))
    assert current_environment(member.client.get(member.url("release_list")).content.decode()) == "staging"
    assert current_environment(member.client.get(member.url("performance")).content.decode()) == "staging"
    # Another app of the same member is not affected.
    other = member.client.get(f"/orgs/{second_app.organization.public_id}/apps/{second_app.public_id}/").content.decode()
    assert current_environment(other) == "All"
    # "All" forgets the choice.
    member.client.get(member.url("issue_list"), {"environment": ""})
    html = member.client.get(member.url("issue_list")).content.decode()
    assert current_environment(html) == "All"
    assert issue_rows(html) == dict(counted())


def test_issue_page_shows_where_it_was_seen_and_filters_its_events(member, digested):
    issue = digested["Payment failed"]
    html = member.client.get(member.url("issue_detail", issue.id)).content.decode()
    seen = dict(re.findall(r'<tr class="seen-in-row"><td>(?:<code>([^<]*)</code>|<span class="muted">\(no environment\)</span>)</td><td class="num">(\d+) event', html))
    expected = Counter(env for message, env, _ in SENT if message == "Payment failed")
    assert {name: int(count) for name, count in seen.items()} == dict(expected)
    # In staging: the staging count, and the latest staging event (4 minutes ago, not 1).
    html = member.client.get(member.url("issue_detail", issue.id), {"environment": "staging"}).content.decode()
    assert re.search(r"<dt>Events in staging</dt><dd>(\d+)</dd>", html).group(1) == str(expected["staging"])
    assert "environment <code>staging</code>" in html and "environment <code>production</code>" not in html
    # An issue never seen in the chosen environment says so.
    html = member.client.get(member.url("issue_detail", digested["Timeout talking to bank"].id)).content.decode()
    assert "No stored event of this issue in staging" in html


def test_performance_pages_filter_by_environment(perf):
    from opbeat_agent.sketch import DurationSketch

    minute = (timezone.now() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:00Z")
    sent: dict[str, list[float]] = {"production": [10.0 + i % 5 for i in range(120)], "staging": [300.0 + i for i in range(30)]}
    for environment, values in sent.items():
        sketch = DurationSketch.of(values)
        body = {
            "machine": {"hostname": "web-1"}, "environment": environment,
            "histograms": [{
                "transaction": "GET /orders/", "result": 200, "kind": "request", "timestamp": minute,
                "count": sketch.count, "sum": sketch.sum, "min": sketch.min, "max": sketch.max, "sketch": sketch.to_dict(),
            }],
        }  # fmt: skip
        assert perf.post_agent(body).status_code == 202
    perf.work()
    name = TransactionName.objects.get(app=perf.app, name="GET /orders/")
    everything = sent["production"] + sent["staging"]
    # All environments: merged exactly.
    assert figure(perf.page("performance", range="1h"), "total-count") == len(everything)
    assert abs(figure(perf.page("performance", range="1h"), "total-avg") - sum(everything) / len(everything)) <= 0.01 * sum(everything) / len(everything)
    for environment, values in sent.items():
        for page, args in (("performance", ()), ("transaction_detail", (name.id,))):
            html = perf.page(page, *args, range="1h", environment=environment)
            assert figure(html, "total-count") == len(values), (page, environment)
            assert abs(figure(html, "total-avg") - sum(values) / len(values)) <= 0.01 * sum(values) / len(values)
            assert current_environment(html) == environment
    # Remembered on the transaction page too; "All" again gives the merged figures.
    assert figure(perf.page("transaction_detail", name.id, range="1h"), "total-count") == len(sent["staging"])
    assert figure(perf.page("transaction_detail", name.id, range="1h", environment=""), "total-count") == len(everything)


def test_another_organizations_choice_can_be_neither_read_nor_set(member, digested):
    member.client.get(member.url("issue_list"), {"environment": "staging"})
    stranger, _, _ = org_app_create()
    client = Client()
    client.force_login(stranger)
    issue = digested["Payment failed"]
    for name, args in (("issue_list", ()), ("issue_detail", (issue.id,)), ("performance", ()), ("release_list", ())):
        for params in ({}, {"environment": "production"}, {"environment": ""}):
            assert client.get(member.url(name, *args), params).status_code == 404, (name, params)
    assert not EnvironmentChoice.objects.filter(user=stranger).exists()
    # The member's own choice is untouched.
    assert current_environment(member.client.get(member.url("issue_list")).content.decode()) == "staging"


def test_query_budgets_with_an_environment_chosen(member, digested, django_assert_max_num_queries):
    member.client.get(member.url("issue_list"), {"environment": "staging"})
    issue = digested["Payment failed"]
    # session, user, app, remembered environment, environment names, issue count, issue page,
    # sparklines, app chart, exception types, drops, release markers
    with django_assert_max_num_queries(12):
        assert member.client.get(member.url("issue_list")).status_code == 200
    # ... and a changed choice: one more, to remember it.
    with django_assert_max_num_queries(13):
        assert member.client.get(member.url("issue_list"), {"environment": "production"}).status_code == 200
    with django_assert_max_num_queries(14):
        assert member.client.get(member.url("issue_detail", issue.id)).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        assert member.client.get(member.url("performance")).status_code == 200
    # session, user, app, remembered environment, environment names, names, rollups per range
    # piece (at most 3 for the table, 1 + 3 for the charts), total name, release markers
    assert len(captured.captured_queries) <= 15, [q["sql"][:120] for q in captured.captured_queries]


@pytest.mark.django_db(transaction=True)
def test_upgrading_fills_where_stored_issues_were_seen(client):
    """Issues stored before environments were kept: the migration counts their stored events per
    environment, and the events no longer stored (pruned) as "no environment"."""
    from django.db.migrations.executor import MigrationExecutor

    from processing.models import Issue as CurrentIssue

    user, organization, app = org_app_create()

    def migrate(targets):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    latest = [("processing", "0007_environments")]
    old_apps = migrate([("processing", "0006_rejection_examples")])
    try:
        OldIssue = old_apps.get_model("processing", "Issue")
        OldEvent = old_apps.get_model("processing", "Event")
        now = timezone.now()
        # Five events counted, three still stored: two in production, one in staging.
        issue = OldIssue.objects.create(
            app_id=app.pk, fingerprint="f" * 40, title="Payment failed", event_count=5,
            first_seen=now - timedelta(days=3), last_seen=now - timedelta(minutes=1),
        )  # fmt: skip
        for environment, minutes in (("production", 1), ("production", 2), ("staging", 3)):
            OldEvent.objects.create(
                event_id=uuid.uuid4(), app_id=app.pk, issue=issue, timestamp=now - timedelta(minutes=minutes),
                received_at=now, title="Payment failed", environment=environment, data={"message": "Payment failed"},
            )  # fmt: skip
    finally:
        migrate(latest)

    client.force_login(user)
    issue_id = CurrentIssue.objects.get(app_id=app.pk).id
    base = f"/orgs/{organization.public_id}/apps/{app.public_id}"
    html = client.get(f"{base}/issues/{issue_id}/").content.decode()
    seen = re.findall(
        r'<tr class="seen-in-row"><td>(?:<code>([^<]*)</code>|<span class="muted">\(no environment\)</span>)</td><td class="num">(\d+) event',
        html,
    )
    assert {name: int(count) for name, count in seen} == {"production": 2, "staging": 1, "": 2}
    assert issue_rows(client.get(f"{base}/", {"environment": "production"}).content.decode()) == {"Payment failed": 2}
    # The selector lists the environments the stored events named.
    assert 'environment=staging"' in html
