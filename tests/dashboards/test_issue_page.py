"""The issue page: the exception, the whole stack trace, request, user, machine, tags, grouping
reason, counts and chart, previous/next events, and the resolve / ignore / reopen actions."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from processing.models import Issue
from tests.dashboards.rows import LOG_MESSAGE, event_create, fixture_event, hourly_create, issue_create


def section(html: str, start: str, end: str) -> str:
    return html[html.index(start): html.index(end, html.index(start))]


def test_shows_exception_and_stack_trace_of_a_real_opbeat_event(member):
    issue = issue_create(app=member.app, event_count=3, users_count=2)
    event_create(issue=issue, data=fixture_event())

    response = member.client.get(member.url("issue_detail", issue.id))

    assert response.status_code == 200
    html = response.content.decode()
    assert '<span class="exc-type">ZeroDivisionError</span>: <span class="exc-value">division by zero</span>' in html
    assert "Grouped by exception type ZeroDivisionError and in-app frames bench.views.error" in html
    traceback = section(html, '<div class="traceback">', '<p class="exc-line">')
    # Python's order: the oldest call first, the failing in-app frame last.
    assert traceback.index("django/core/handlers/exception.py") < traceback.index("bench/views.py")
    # Library frames are folded, the in-app frame is expanded with numbered lines and its locals.
    assert re.search(r'<details class="frame library">\s*<summary><span class="filename">django/core/handlers/exception.py', traceback)
    in_app = traceback[traceback.index('<div class="frame in-app">'):]
    assert '<span class="filename">bench/views.py</span>, line <span class="lineno">23</span>, in <span class="function">error</span>' in in_app
    assert '<li class=""><span class="ln">20</span><code>def error(request):</code></li>' in in_app
    assert '<li class="current"><span class="ln">23</span><code>    return HttpResponse(str(1 / divisor))</code></li>' in in_app
    assert "<th>divisor</th><td><pre>0</pre></td>" in in_app
    assert "<th>secret_password</th><td><pre>********</pre></td>" in in_app
    # Request, user-visible context and counts.
    assert "<code>http://127.0.0.1:18000/error?foo=bar&amp;password=pw</code>" in html
    assert "<th>User-Agent</th><td><pre>capture-script/1.0</pre></td>" in html
    assert "<th>sessionid</th><td><pre>********</pre></td>" in html
    assert "<th>REMOTE_ADDR</th><td><pre>127.0.0.1</pre></td>" in html
    assert "<th>hostname</th><td><pre>vm</pre></td>" in html
    assert "<dt>Events</dt><dd>3</dd>" in html and "<dt>Users</dt><dd>2</dd>" in html


def test_shows_user_tags_release_environment_extra_and_chained_causes(member):
    data = fixture_event()
    data.update(
        user={"id": 7, "username": "alice", "email": "alice@example.org", "is_authenticated": True},
        tags={"region": "eu-west"},
        release="v1.2.3",
        environment="staging",
        extra={"order_id": 42},
    )
    data["exception"]["chain"] = [
        {"type": "KeyError", "value": "'price'", "module": "builtins", "reason": "cause",
         "stacktrace": {"frames": [{"filename": "shop/prices.py", "function": "lookup", "lineno": 9,
                                    "context_line": "    return table[key]", "in_app": True}]}},
    ]
    issue = issue_create(app=member.app)
    event_create(issue=issue, data=data)

    html = member.client.get(member.url("issue_detail", issue.id)).content.decode()

    assert "<th>username</th><td><pre>alice</pre></td>" in html
    assert "<th>email</th><td><pre>alice@example.org</pre></td>" in html
    assert "<th>region</th><td><pre>eu-west</pre></td>" in html
    assert "release <code>v1.2.3</code>" in html and "environment <code>staging</code>" in html
    assert "<th>order_id</th><td><pre>42</pre></td>" in html
    # The cause is printed first, like Python does, then the exception that was raised.
    assert html.index("<strong>KeyError</strong>: &#x27;price&#x27;") < html.index("<strong>ZeroDivisionError</strong>: division by zero")
    assert '<span class="filename">shop/prices.py</span>' in html
    assert "The above exception was the direct cause of the following exception:" in html


def test_a_log_message_without_stack_trace(member):
    issue = issue_create(app=member.app, title="Payment %s failed for user %s", exception_type="")
    event_create(issue=issue, data=fixture_event(LOG_MESSAGE))

    html = member.client.get(member.url("issue_detail", issue.id)).content.decode()

    assert '<h2 class="message-title">Payment p-123 failed for user alice</h2>' in html
    assert "Message template: <code>Payment %s failed for user %s</code>" in html
    assert "logger <code>demo.payments</code>" in html
    assert "No stack trace was sent with this event." in html
    assert "No request was sent with this event." in html


def test_previous_and_next_events(member):
    issue = issue_create(app=member.app, event_count=3)
    now = timezone.now()
    oldest = event_create(issue=issue, timestamp=now - timedelta(minutes=2))
    middle = event_create(issue=issue, timestamp=now - timedelta(minutes=1))
    newest = event_create(issue=issue, timestamp=now)

    latest_page = member.client.get(member.url("issue_detail", issue.id)).content.decode()
    middle_page = member.client.get(member.url("issue_event", issue.id, middle.event_id)).content.decode()
    oldest_page = member.client.get(member.url("issue_event", issue.id, oldest.event_id)).content.decode()

    assert newest.event_id.hex in latest_page
    assert f'href="{member.url("issue_event", issue.id, middle.event_id)}" rel="prev"' in latest_page
    assert 'rel="next"' not in latest_page
    assert f'href="{member.url("issue_event", issue.id, oldest.event_id)}" rel="prev"' in middle_page
    assert f'href="{member.url("issue_event", issue.id, newest.event_id)}" rel="next"' in middle_page
    assert 'rel="prev"' not in oldest_page


def test_events_with_the_same_timestamp_still_walk_one_by_one(member):
    issue = issue_create(app=member.app, event_count=3)
    moment = timezone.now()
    events = [event_create(issue=issue, timestamp=moment) for _ in range(3)]

    seen = []
    url = member.url("issue_detail", issue.id)
    while url:
        html = member.client.get(url).content.decode()
        seen.append(re.search(r"Event <code>([0-9a-f]{32})</code>", html).group(1))
        found = re.search(r'href="([^"]+)" rel="prev"', html)
        url = found.group(1) if found else ""
    assert seen == [event.event_id.hex for event in reversed(events)]


def test_an_event_of_another_issue_is_not_found_on_this_one(member):
    issue = issue_create(app=member.app)
    other = issue_create(app=member.app, title="other")
    event = event_create(issue=other)
    assert member.client.get(member.url("issue_event", issue.id, event.event_id)).status_code == 404
    assert member.client.get(member.url("issue_event", issue.id, uuid.uuid4())).status_code == 404


def test_issue_chart_and_pruned_events(member):
    issue = issue_create(app=member.app, event_count=9)
    hourly_create(issue=issue, counts={timezone.now(): 9})

    html = member.client.get(member.url("issue_detail", issue.id)).content.decode()

    assert "Events per hour: 9 events" in html
    assert "pruned by the retention policy" in html


def test_resolve_ignore_and_reopen(member):
    issue = issue_create(app=member.app)
    issue.is_regressed = True
    issue.save()
    status_url = member.url("issue_status", issue.id)
    page = member.client.get(member.url("issue_detail", issue.id)).content.decode()
    assert f'action="{status_url}"' in page
    assert 'value="resolve"' in page and 'value="ignore"' in page and 'value="reopen"' not in page

    response = member.client.post(status_url, {"action": "resolve"})
    assert response.status_code == 302 and response["Location"] == member.url("issue_detail", issue.id)
    issue.refresh_from_db()
    assert issue.status == Issue.Status.RESOLVED and issue.resolved_at is not None and not issue.is_regressed
    page = member.client.get(member.url("issue_detail", issue.id)).content.decode()
    assert '<span class="badge status-resolved">Resolved</span>' in page and 'value="reopen"' in page

    member.client.post(status_url, {"action": "ignore"})
    issue.refresh_from_db()
    assert issue.status == Issue.Status.IGNORED
    list_html = member.client.get(member.url("issue_list") + "?status=ignored").content.decode()
    assert issue.title in list_html

    member.client.post(status_url, {"action": "reopen", "next": member.url("issue_list")})
    issue.refresh_from_db()
    assert issue.status == Issue.Status.UNRESOLVED and issue.resolved_at is None


def test_status_rejects_bad_action_get_foreign_redirects_and_missing_csrf(member):
    issue = issue_create(app=member.app)
    status_url = member.url("issue_status", issue.id)

    assert member.client.post(status_url, {"action": "delete"}).status_code == 400
    assert member.client.get(status_url).status_code == 405
    response = member.client.post(status_url, {"action": "resolve", "next": "https://evil.example/"})
    assert response["Location"] == member.url("issue_detail", issue.id)

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member.user)
    assert strict.post(status_url, {"action": "ignore"}).status_code == 403
    issue.refresh_from_db()
    assert issue.status == Issue.Status.RESOLVED


def test_query_budget_does_not_grow_with_events(member, django_assert_max_num_queries):
    issue = issue_create(app=member.app)
    event_create(issue=issue)
    # session, user, app, issue, remembered environment, environment names, event, previous,
    # next, hourly chart, release markers, environments seen in, follow-up (suspect, assignee),
    # members (the reassign form)
    with django_assert_max_num_queries(14):
        assert member.client.get(member.url("issue_detail", issue.id)).status_code == 200
    for _ in range(30):
        event_create(issue=issue)
    hourly_create(issue=issue, counts={timezone.now(): 31})
    with django_assert_max_num_queries(14):
        assert member.client.get(member.url("issue_detail", issue.id)).status_code == 200
    older_event_url = member.url("issue_event", issue.id, issue.events.order_by("id").first().event_id)
    with django_assert_max_num_queries(14):
        assert member.client.get(older_event_url).status_code == 200


def test_event_redirect_goes_to_the_digested_event(member, django_assert_max_num_queries):
    issue = issue_create(app=member.app)
    event = event_create(issue=issue)
    target = member.url("issue_event", issue.id, event.event_id)

    # The intake's Location carries uuid.hex; a hyphenated id works too.
    with django_assert_max_num_queries(4):
        response = member.client.get(f"/orgs/{member.organization.public_id}/apps/{member.app.public_id}/events/{event.event_id.hex}/")
    assert response.status_code == 302 and response["Location"] == target
    response = member.client.get(f"/orgs/{member.organization.public_id}/apps/{member.app.public_id}/events/{event.event_id}/")
    assert response.status_code == 302 and response["Location"] == target
    assert target.endswith(f"/events/{event.event_id.hex}/")


def test_event_redirect_waits_for_the_worker(member):
    pending_id = uuid.uuid4()

    response = member.client.get(member.url("event_redirect", pending_id))

    assert response.status_code == 200
    html = response.content.decode()
    assert '<meta http-equiv="refresh" content="2">' in html
    assert "This event is being processed" in html
    assert pending_id.hex in html
