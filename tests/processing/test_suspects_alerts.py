"""Suspect commits, automatic assignment, "resolve in the next release" and alerts, through the
worker's services: releases stored as the intake hands them over, events digested, issues
followed up, and the email read from a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from accounts.models import Membership, User
from accounts.verification import user_email_mark_verified
from processing.alerts import alerts_flush
from processing.webhooks import webhook_target_refusal
from processing.digest import events_digest
from processing.followup import issues_followup
from processing.models import AlertSubscription, AppAlertSettings, EmailAlias, Issue, IssueFollowup
from processing.releases import release_store
from processing.suspects import file_suspect, hunk_covers, line_map_back, path_matches
from tests.factories import org_app_create, user_create
from tests.processing.helpers import envelope
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.django_db
SHA_A, SHA_B, SHA_C, SHA_D = "a1" * 20, "b2" * 20, "c3" * 20, "d4" * 20
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)


# --- Pure line mapping ----------------------------------------------------------------------------


def test_a_line_is_mapped_back_through_newer_hunks():
    # A newer commit inserted 5 lines at the top and removed 2 lines at 30: line 47 was line 42 + ...
    assert line_map_back([[0, 0, 1, 5]], 47) == 42
    assert line_map_back([[0, 0, 1, 5], [30, 2, 34, 0]], 47) == 44
    # Hunks below the line do not move it; a hunk covering it is the suspect instead.
    assert line_map_back([[60, 1, 60, 4]], 47) == 47
    assert hunk_covers([40, 3, 41, 3], 43) and not hunk_covers([40, 3, 41, 3], 44)
    assert not hunk_covers([40, 2, 39, 0], 39)  # a pure deletion covers no line


def test_file_suspect_follows_the_line_into_older_commits():
    older, newer = object(), object()
    changes = [(newer, [[0, 0, 1, 5]]), (older, [[40, 3, 41, 3]])]
    assert file_suspect(changes, 47) is older  # 47 is 42 before `newer`
    assert file_suspect(changes, 3) is newer
    assert file_suspect(changes, 100) is None


def test_frame_paths_match_repository_paths_on_a_boundary():
    assert path_matches("/srv/app/orders/views.py", "orders/views.py")
    assert path_matches("orders/views.py", "src/orders/views.py")
    assert not path_matches("/srv/app/myorders/views.py", "orders/views.py")


# --- Through the worker ----------------------------------------------------------------------------


@pytest.fixture
def team():
    al = user_create("al@example.com")
    bea = user_create("bea@example.com")
    # Only verified addresses are matched; how a person verifies is tested in tests/accounts.
    user_email_mark_verified(user=al)
    user_email_mark_verified(user=bea)
    _, organization, app = org_app_create(owner=al)
    Membership.objects.create(organization=organization, user=bea)
    v1 = release_store(
        app=app, version="v1", environment="production", deployed_at=T0,
        commits=[_commit(SHA_A, "al@example.com", "Create orders", T0 - timedelta(hours=5), [[0, 0, 1, 50]])],
    )  # fmt: skip
    v2 = release_store(
        app=app, version="v2", environment="production", deployed_at=T0 + timedelta(hours=1),
        commits=[
            _commit(SHA_C, "al@example.com", "Banner at the top", T0 + timedelta(minutes=30), [[0, 0, 1, 5]]),
            _commit(SHA_B, "bea@example.com", "Add discount codes", T0 + timedelta(minutes=20), [[41, 3, 41, 3]]),
        ],
    )  # fmt: skip
    return {"al": al, "bea": bea, "organization": organization, "app": app, "v1": v1, "v2": v2}


def _commit(sha, email, message, when, hunks, path="orders/views.py"):
    return {
        "sha": sha, "author_name": email.split("@")[0].title(), "author_email": email, "message": message,
        "timestamp": when.isoformat(), "files": [{"path": path, "status": "modified", "hunks": hunks}],
    }  # fmt: skip


def crash(function: str, line: int, *, path: str = "orders/views.py", release: str = "v2", environment: str = "production") -> dict:
    return {
        "exception": {"type": "ValueError", "value": f"bad input in {function}"},
        "culprit": f"orders.views in {function}",
        "release": release,
        "environment": environment,
        "stacktrace": {
            "frames": [
                {"filename": "django/core/handlers/base.py", "lineno": 10, "function": "get_response", "library_frame": True},
                {"filename": path, "abs_path": f"/srv/app/{path}", "lineno": line, "function": function, "in_app": True,
                 "pre_context": ["    total = order.total", "    code = request.GET['code']"],
                 "context_line": "    discount = DISCOUNTS[code]", "post_context": ["    return total - discount"]},
                {"filename": "/usr/lib/python3.11/json/__init__.py", "lineno": 3, "function": "loads", "in_app": False},
            ]
        },
    }  # fmt: skip


def digest_followup(app, data: dict, *, at: datetime | None = None, now: datetime | None = None) -> Issue:
    result = events_digest(envelopes=[envelope(app, data, at=at)])
    issues_followup(issue_ids=sorted(result.issue_ids), now=now)
    [issue_id] = result.issue_ids
    return Issue.objects.select_related("followup__assignee", "followup__suspect_commit").get(pk=issue_id)


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        yield server


def test_the_line_a_later_commit_moved_is_assigned_to_who_changed_it(team, smtp):
    issue = digest_followup(team["app"], crash("checkout", 47))
    followup = issue.followup
    assert followup.suspect_commit.sha == SHA_B
    assert followup.assignee == team["bea"]
    assert followup.suspect_reason == "frame `orders/views.py:47` in `checkout`, changed by b2b2b2b 'Add discount codes'"
    assert followup.first_release == "v2"
    # The assignee alone gets the email, with what the issue says it should carry.
    [mail] = smtp.to("bea@example.com")
    assert smtp.to("al@example.com") == []
    assert "ValueError: bad input in checkout" in mail.body
    assert "orders.views in checkout" in mail.body
    assert " >    47      discount = DISCOUNTS[code]" in mail.body
    assert "Suspect commit: b2b2b2b 'Add discount codes'" in mail.body
    org, app = team["organization"].public_id, team["app"].public_id
    assert f"/orgs/{org}/apps/{app}/issues/{issue.pk}/" in mail.body
    assert mail.subject.startswith("[web] New exception: ValueError")


def test_a_line_the_newest_commit_added_is_its_authors(team):
    assert digest_followup(team["app"], crash("banner", 3)).followup.assignee == team["al"]


def test_no_hunk_covers_the_line_falls_back_to_the_newest_commit_of_the_file(team):
    followup = digest_followup(team["app"], crash("refund", 80)).followup
    assert followup.suspect_commit.sha == SHA_C
    assert followup.suspect_reason == (
        "frame `orders/views.py:80` in `refund`: no commit changed that line; "
        "the newest change to its file is c3c3c3c 'Banner at the top'"
    )
    assert followup.assignee == team["al"]


def test_an_event_of_an_older_release_ignores_newer_commits(team):
    followup = digest_followup(team["app"], crash("legacy", 42, release="v1")).followup
    assert followup.suspect_commit.sha == SHA_A


def test_no_commit_touched_the_file_means_no_suspect_and_members_are_alerted(team, smtp):
    followup = digest_followup(team["app"], crash("invoice", 12, path="billing/invoice.py")).followup
    assert followup.suspect_commit is None and followup.assignee is None
    assert len(smtp.to("al@example.com")) == 1 and len(smtp.to("bea@example.com")) == 1


def test_a_non_member_author_is_the_suspect_but_nobody_is_assigned(team):
    release_store(
        app=team["app"], version="v3", environment="production", deployed_at=T0 + timedelta(hours=2),
        commits=[_commit(SHA_D, "contractor@elsewhere.com", "Tweak", T0 + timedelta(hours=1, minutes=30), [[10, 1, 10, 1]])],
    )  # fmt: skip
    followup = digest_followup(team["app"], crash("tweak", 10, release="v3")).followup
    assert followup.suspect_commit.sha == SHA_D
    assert followup.assignee is None


def test_a_verified_email_alias_finds_the_member_and_an_unverified_one_nobody(team):
    from dashboards.aliases import alias_verify

    alias = EmailAlias.objects.create(user=team["bea"], email="bea@laptop.local")
    release_store(
        app=team["app"], version="v3", environment="production", deployed_at=T0 + timedelta(hours=2),
        commits=[
            _commit(SHA_D, "Bea@Laptop.local", "Fix", T0 + timedelta(hours=1, minutes=30), [[10, 1, 10, 1]]),
            _commit("e5" * 20, "Bea@Laptop.local", "Fix more", T0 + timedelta(hours=1, minutes=40), [[20, 1, 20, 1]]),
        ],
    )  # fmt: skip
    followup = digest_followup(team["app"], crash("fix", 10, release="v3")).followup
    assert followup.suspect_commit.sha == SHA_D and followup.assignee is None
    alias_verify(alias=alias)
    assert digest_followup(team["app"], crash("fix_more", 20, release="v3")).followup.assignee == team["bea"]


def test_an_unverified_member_address_is_the_suspects_but_assigns_nobody(team):
    User.objects.filter(pk=team["bea"].pk).update(email_verified_at=None)  # an account from before verification
    followup = digest_followup(team["app"], crash("checkout", 47)).followup
    assert followup.suspect_commit.sha == SHA_B
    assert followup.assignee is None


def test_automatic_assignment_can_be_turned_off_per_app(team):
    AppAlertSettings.objects.create(app=team["app"], auto_assign=False)
    followup = digest_followup(team["app"], crash("checkout", 47)).followup
    assert followup.suspect_commit is None and followup.assignee is None


def test_resolved_in_the_next_release_regresses_only_on_a_later_release(team):
    from dashboards.issue_actions import issue_resolve_next_release

    issue = digest_followup(team["app"], crash("checkout", 47, release="v1"), at=T0 + timedelta(minutes=5))
    issue = issue_resolve_next_release(issue=issue)
    # v2 is what production runs now: the fix ships in the release after it.
    assert issue.followup.resolved_in_release == team["v2"]
    # Later events of v1 and v2 do not reopen it: the fix is not deployed there.
    for release in ("v1", "v2", "v9"):  # v9 was never deployed: not "after" anything
        events_digest(envelopes=[envelope(team["app"], crash("checkout", 47, release=release))])
        issue.refresh_from_db()
        assert issue.status == Issue.Status.RESOLVED, release
    release_store(app=team["app"], version="v3", environment="production", deployed_at=T0 + timedelta(hours=3), commits=[])
    events_digest(envelopes=[envelope(team["app"], crash("checkout", 47, release="v3"))])
    issue.refresh_from_db()
    assert issue.status == Issue.Status.UNRESOLVED and issue.is_regressed
    assert IssueFollowup.objects.get(issue=issue).regressed_release == "v3"


def test_deploy_order_is_per_environment(team):
    from dashboards.issue_actions import issue_resolve_next_release

    # Staging got v2 and then v1 (a rollback); production v1 then v2.
    release_store(app=team["app"], version="v2", environment="staging", deployed_at=T0, commits=[])
    release_store(app=team["app"], version="v1", environment="staging", deployed_at=T0 + timedelta(hours=3), commits=[])
    issue = digest_followup(team["app"], crash("checkout", 47, release="v1", environment="staging"))
    assert issue_resolve_next_release(issue=issue).followup.resolved_in_release.version == "v1"
    # In staging v2 came before v1, so a v2 event there is not a regression (in production it would be).
    events_digest(envelopes=[envelope(team["app"], crash("checkout", 47, release="v2", environment="staging"))])
    issue.refresh_from_db()
    assert issue.status == Issue.Status.RESOLVED
    release_store(app=team["app"], version="v4", environment="staging", deployed_at=T0 + timedelta(hours=4), commits=[])
    events_digest(envelopes=[envelope(team["app"], crash("checkout", 47, release="v4", environment="staging"))])
    issue.refresh_from_db()
    assert issue.is_regressed


def test_one_alert_per_issue_per_window_and_a_digest_for_bursts(team, smtp):
    now = datetime.now(tz=timezone.utc)
    digest_followup(team["app"], crash("checkout", 47), now=now)
    assert len(smtp.to("bea@example.com")) == 1
    # Three more new issues for Bea within minutes: no email each, one digest later.
    for function in ("pay", "ship", "bill"):
        release_store(
            app=team["app"], version=f"v-{function}", environment="production", deployed_at=now,
            commits=[_commit(f"{function[0]}e" * 20, "bea@example.com", function, now, [[1, 1, 1, 1]], path=f"{function}.py")],
        )  # fmt: skip
        digest_followup(team["app"], crash(function, 1, path=f"{function}.py", release=f"v-{function}"), now=now + timedelta(minutes=1))
    assert len(smtp.to("bea@example.com")) == 1
    assert alerts_flush(now=now + timedelta(minutes=2)) == 0  # still inside the digest window
    assert alerts_flush(now=now + timedelta(minutes=7)) == 1
    mails = smtp.to("bea@example.com")
    assert len(mails) == 2
    assert "3 alerts since your last email" in mails[1].body
    assert all(f"in {function}" in mails[1].body for function in ("pay", "ship", "bill"))
    assert smtp.to("al@example.com") == []


def test_subscription_modes(team, smtp):
    AlertSubscription.objects.create(app=team["app"], user=team["al"], mode=AlertSubscription.Mode.NONE)
    AlertSubscription.objects.create(app=team["app"], user=team["bea"], mode=AlertSubscription.Mode.ASSIGNED)
    digest_followup(team["app"], crash("invoice", 12, path="billing/invoice.py"))  # nobody assigned
    assert smtp.received == []
    digest_followup(team["app"], crash("checkout", 47))  # assigned to Bea
    assert len(smtp.to("bea@example.com")) == 1 and smtp.to("al@example.com") == []


def test_regression_and_spike_alerts(team, smtp):
    AppAlertSettings.objects.create(app=team["app"], spike_threshold=4, spike_window_minutes=60, issue_window_minutes=0)
    issue = digest_followup(team["app"], crash("checkout", 47))
    Issue.objects.filter(pk=issue.pk).update(status=Issue.Status.RESOLVED, resolved_at=datetime.now(tz=timezone.utc))
    digest_followup(team["app"], crash("checkout", 47))
    kinds = [mail.subject.split("]")[1].split(":")[0].strip() for mail in smtp.to("bea@example.com")]
    assert kinds == ["New exception", "Regression in release v2"]
    digest_followup(team["app"], crash("checkout", 47))  # 3 events in the window: under the threshold
    assert len(smtp.to("bea@example.com")) == 2
    digest_followup(team["app"], crash("checkout", 47))
    assert "Spike" in smtp.to("bea@example.com")[-1].subject
    digest_followup(team["app"], crash("checkout", 47))  # one spike alert per spike window
    assert len(smtp.to("bea@example.com")) == 3


def test_at_most_one_alert_per_issue_per_window_but_every_regression(team, smtp):
    AppAlertSettings.objects.create(app=team["app"], issue_window_minutes=60, spike_threshold=2)
    issue = digest_followup(team["app"], crash("checkout", 47))
    digest_followup(team["app"], crash("checkout", 47))  # a spike within the hour of the first alert: no mail
    assert len(smtp.to("bea@example.com")) == 1
    # A regression follows someone's resolve, so it cannot flood: it is mailed within the hour too.
    Issue.objects.filter(pk=issue.pk).update(status=Issue.Status.RESOLVED, resolved_at=datetime.now(tz=timezone.utc))
    digest_followup(team["app"], crash("checkout", 47))
    assert Issue.objects.get(pk=issue.pk).is_regressed
    assert [mail.subject.split(":")[0] for mail in smtp.to("bea@example.com")] == ["[web] New exception", "[web] Regression in release v2"]


class _Hook(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802 - http.server's hook name
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_webhook_gets_slack_compatible_json(team, settings):
    settings.OPBEAT_WEBHOOK_ALLOW_PRIVATE = True  # the stand-in chat service listens on loopback
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Hook.bodies = []
        AppAlertSettings.objects.create(app=team["app"], webhook_url=f"http://127.0.0.1:{server.server_port}/hook")
        issue = digest_followup(team["app"], crash("checkout", 47))
    finally:
        server.shutdown()
        server.server_close()
    [body] = _Hook.bodies
    assert body["text"].startswith("New exception in web: <http")
    assert body["attachments"][0]["title"] == issue.title
    assert body["opbeat"]["kind"] == "new" and body["opbeat"]["issue_id"] == issue.pk
    assert any("b2b2b2b" in field["value"] for field in body["attachments"][0]["fields"])


def test_a_webhook_into_this_network_is_not_called(team, settings, caplog):
    # An owner's webhook URL must not make the worker call into the server's own network (SSRF):
    # by default only public addresses are called, and the email alert still goes out.
    assert settings.OPBEAT_WEBHOOK_ALLOW_PRIVATE is False
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Hook.bodies = []
        for function, host in (("checkout", "127.0.0.1"), ("refund", "localhost")):
            url = f"http://{host}:{server.server_port}/hook"
            AppAlertSettings.objects.update_or_create(app=team["app"], defaults={"webhook_url": url})
            with caplog.at_level("WARNING", logger="processing.alerts"):
                digest_followup(team["app"], crash(function, 47))  # a new issue each time: an alert
            assert f"webhook {url} not called" in caplog.text
    finally:
        server.shutdown()
        server.server_close()
    assert _Hook.bodies == []
    assert webhook_target_refusal("http://10.0.0.5/hook").endswith("not a public address")
    assert webhook_target_refusal("ftp://example.com/hook") == "only http and https URLs with a host are called"
