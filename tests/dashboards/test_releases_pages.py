"""The releases pages, the issue page's assignment and release sections, the alerts page and the
releases REST API, as a member sees them (HTML/JSON out); another organization gets 404s."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Membership
from accounts.verification import user_email_mark_verified
from processing.digest import events_digest
from processing.followup import issues_followup
from processing.models import AlertSubscription, AppAlertSettings, EmailAlias, Issue, IssueFollowup
from processing.releases import release_store
from tests.factories import org_app_create, user_create
from tests.fakenet import FakeNet
from tests.processing.helpers import envelope
from tests.processing.test_suspects_alerts import crash

SHA_A, SHA_B = "a1" * 20, "b2" * 20


@pytest.fixture
def released(member):
    now = timezone.now()
    bea = user_create("bea@example.com")
    # These tests are about the pages, not verification (tests/accounts/test_verification.py):
    # Bea's address is verified the way an operator-made account is.
    user_email_mark_verified(user=bea)
    Membership.objects.create(organization=member.organization, user=bea)
    v1 = release_store(
        app=member.app, version="v1", environment="production", deployed_at=now - timedelta(hours=3),
        commits=[{"sha": SHA_A, "author_name": "Al", "author_email": member.user.email, "message": "Create orders",
                  "timestamp": (now - timedelta(hours=4)).isoformat(),
                  "files": [{"path": "orders/views.py", "status": "added", "hunks": [[0, 0, 1, 50]]}]}],
    )  # fmt: skip
    v2 = release_store(
        app=member.app, version="v2", environment="production", deployed_at=now - timedelta(hours=1),
        commits=[{"sha": SHA_B, "author_name": "Bea", "author_email": "bea@example.com", "message": "Add <discount> codes",
                  "timestamp": (now - timedelta(hours=2)).isoformat(),
                  "files": [{"path": "orders/views.py", "status": "modified", "hunks": [[41, 3, 41, 3]]}]}],
    )  # fmt: skip
    result = events_digest(envelopes=[envelope(member.app, crash("checkout", 42))])
    issues_followup(issue_ids=sorted(result.issue_ids))
    [issue_id] = result.issue_ids
    return {"bea": bea, "v1": v1, "v2": v2, "issue": Issue.objects.get(pk=issue_id)}


def test_releases_page_lists_versions_with_commits_authors_and_new_issues(member, released):
    response = member.client.get(member.url("release_list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index("<code>v2</code>") < html.index("<code>v1</code>")  # newest first
    row = html[html.index("<code>v2</code>") : html.index("<code>v1</code>")]
    assert "production" in row and ">1</td>" in row and "Bea" in row
    assert '<td class="new-issues">1</td>' in row
    assert "deploy order per environment" in html


def test_release_page_lists_commits_files_and_whats_new(member, released):
    response = member.client.get(member.url("release_detail", released["v2"].pk))
    html = response.content.decode()
    assert response.status_code == 200
    assert "b2b2b2b" in html and "Add &lt;discount&gt; codes" in html and "orders/views.py" in html
    assert "ValueError: bad input in checkout" in html.split("Issues first seen in it")[1].split("Regressions in it")[0]
    assert "Endpoints: p95 before" in html


def test_issue_page_shows_the_suspect_the_reason_and_the_assignee(member, released):
    issue = released["issue"]
    html = member.client.get(member.url("issue_detail", issue.pk)).content.decode()
    assert "Why: frame `orders/views.py:42` in `checkout`, changed by b2b2b2b &#x27;Add &lt;discount&gt; codes&#x27;" in html
    assert "<strong>bea@example.com</strong> (automatically)" in html
    assert "First seen in release <code>v2</code>" in html
    assert 'class="release-marker"' in html  # v1 and v2 were deployed within the chart's 24 hours


def test_manual_reassignment_wins_over_the_worker(member, released):
    issue = released["issue"]
    response = member.client.post(member.url("issue_assign", issue.pk), {"assignee": member.user.pk})
    assert response.status_code == 302
    # The worker looks at the issue again (a regression, say): the manual choice stays.
    Issue.objects.filter(pk=issue.pk).update(status=Issue.Status.RESOLVED, resolved_at=timezone.now() - timedelta(minutes=1))
    result = events_digest(envelopes=[envelope(member.app, crash("checkout", 42))])
    issues_followup(issue_ids=sorted(result.issue_ids))
    followup = IssueFollowup.objects.get(issue=issue)
    assert followup.assignee == member.user and followup.assigned_manually
    html = member.client.get(member.url("issue_detail", issue.pk)).content.decode()
    assert f"<strong>{member.user.email}</strong> (by hand)" in html
    # Only members can be assigned.
    stranger = user_create()
    assert member.client.post(member.url("issue_assign", issue.pk), {"assignee": stranger.pk}).status_code == 400


def test_resolve_in_the_next_release_from_the_issue_page(member, released):
    issue = released["issue"]
    assert member.client.post(member.url("issue_resolve_next", issue.pk)).status_code == 302
    html = member.client.get(member.url("issue_detail", issue.pk)).content.decode()
    assert "Resolved in the next release after <code>v2</code> (production)" in html
    assert "deploy order per environment" in html
    # A plain reopen forgets it.
    member.client.post(member.url("issue_status", issue.pk), {"action": "reopen"})
    assert IssueFollowup.objects.get(issue=issue).resolved_in_release is None


def test_alerts_page_subscription_alias_and_owner_settings(member, released, monkeypatch):
    # The webhook's host is resolved when it is saved: a fake DNS answer, no query leaves.
    FakeNet(monkeypatch).answer("hooks.example.com", ["93.184.216.34"])
    url = member.url("alert_settings")
    assert member.client.get(url).status_code == 200
    member.client.post(url, {"section": "subscription", "mode": "assigned"})
    assert AlertSubscription.objects.get(app=member.app, user=member.user).mode == "assigned"
    member.client.post(url, {"section": "alias", "email": "Me@Laptop.local"})
    assert EmailAlias.objects.filter(user=member.user, email="me@laptop.local").exists()
    assert member.client.post(url, {"section": "alias", "email": "bea@example.com"}).status_code == 400
    response = member.client.post(url, {
        "section": "policy", "auto_assign": "", "alert_new": "on", "alert_regression": "on", "alert_spike": "on",
        "spike_threshold": 50, "spike_window_minutes": 10, "issue_window_minutes": 30, "digest_minutes": 5,
        "webhook_url": "https://hooks.example.com/T1",
    })  # fmt: skip
    assert response.status_code == 302
    policy = AppAlertSettings.objects.get(app=member.app)
    assert policy.auto_assign is False and policy.spike_threshold == 50 and policy.webhook_url == "https://hooks.example.com/T1"
    # A plain member cannot change the app's policy.
    bea = Client()
    bea.force_login(released["bea"])
    assert bea.post(url, {"section": "policy", "spike_threshold": 1}).status_code == 403


def test_rest_api_lists_and_details_releases_and_serves_its_schema(member, released):
    listing = member.client.get(f"/rest/v1/orgs/{member.organization.public_id}/apps/{member.app.public_id}/releases/")
    assert listing.status_code == 200
    results = listing.json()["results"]
    assert [r["version"] for r in results] == ["v2", "v1"] and results[0]["commit_count"] == 1
    detail = member.client.get(
        f"/rest/v1/orgs/{member.organization.public_id}/apps/{member.app.public_id}/releases/{released['v2'].pk}/"
    ).json()
    assert detail["commits"][0]["sha"] == SHA_B
    assert detail["commits"][0]["files"][0]["hunks"] == [[41, 3, 41, 3]]
    schema = member.client.get("/rest/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.") and "/rest/v1/orgs/{org_id}/apps/{app_id}/releases/{release_id}/" in schema["paths"]
    assert Client().get(f"/rest/v1/orgs/{member.organization.public_id}/apps/{member.app.public_id}/releases/").status_code == 403


def test_another_organization_gets_404_everywhere(member, released, db):
    outsider_user, _, _ = org_app_create()
    outsider = Client()
    outsider.force_login(outsider_user)
    issue = released["issue"]
    for url in (
        member.url("release_list"),
        member.url("release_detail", released["v2"].pk),
        member.url("alert_settings"),
        f"/rest/v1/orgs/{member.organization.public_id}/apps/{member.app.public_id}/releases/",
        f"/rest/v1/orgs/{member.organization.public_id}/apps/{member.app.public_id}/releases/{released['v2'].pk}/",
    ):
        assert outsider.get(url).status_code == 404, url
    for url in (member.url("issue_assign", issue.pk), member.url("issue_resolve_next", issue.pk)):
        assert outsider.post(url, {"assignee": outsider_user.pk}).status_code == 404, url
    assert IssueFollowup.objects.get(issue=issue).assignee == released["bea"]
    # Nor does a release of another app of the member's own organization open under this app.
    _, _, other_app = org_app_create(owner=member.user, app_name="other")
    elsewhere = release_store(app=other_app, version="x1", deployed_at=timezone.now(), commits=[])
    assert member.client.get(member.url("release_detail", elsewhere.pk)).status_code == 404
