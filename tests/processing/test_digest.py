"""Digesting batches into the real database (SQLite by default, PostgreSQL with DATABASE_URL)."""

from __future__ import annotations

import copy
import json
import uuid

import pytest
from django.db import IntegrityError

from processing import digest as digest_module
from processing.digest import events_digest
from processing.models import Event, Issue, IssueHourly, IssueUser
from tests.factories import org_app_create
from tests.processing.helpers import ERROR_FIXTURES, envelope, fixture_body, utc

pytestmark = pytest.mark.django_db

DJANGO_36 = "opbeat361_py36_django3114_00"
DJANGO_311 = "opbeat361-patched_py311_django5219_00"


def message_event(text: str = "Cache miss for key", **extra) -> dict:
    return {"message": text, "level": "warning", **extra}


def test_captured_bodies_become_grouped_issues():
    _, _, app = org_app_create()
    envelopes = [envelope(app, json.loads(path.read_text())) for path in ERROR_FIXTURES]
    result = events_digest(envelopes=envelopes)

    assert (result.received, result.stored, result.duplicates, result.skipped) == (7, 7, 0, 0)
    issues = {issue.title: issue for issue in Issue.objects.filter(app=app)}
    # Both Django captures and both Flask captures share an issue: 7 bodies, 5 issues.
    assert Issue.objects.filter(app=app).count() == 5
    zero = Issue.objects.get(app=app, culprit="bench.views.error")
    assert zero.event_count == 2 and zero.title == "ZeroDivisionError: division by zero"
    assert zero.exception_type == "ZeroDivisionError"
    assert zero.grouping_reason == "Grouped by exception type ZeroDivisionError and in-app frames bench.views.error"
    assert zero.users_count == 1  # both requests came from 127.0.0.1 without a logged-in user
    payment = issues["Payment p-123 failed for user alice"]
    assert payment.level == "warning" and payment.event_count == 1
    assert payment.grouping_reason == "Grouped by the message template 'Payment %s failed for user %s'"
    # The event keeps the body as sent, unknown fields included.
    event = Event.objects.get(issue=payment)
    assert event.data["extra"]["gateway"] == "x" and event.data["organization_id"] == "org123"
    assert Event.objects.filter(app=app).count() == 7


def test_redelivered_batch_is_not_counted_twice():
    _, _, app = org_app_create()
    batch = [envelope(app, fixture_body(DJANGO_311)) for _ in range(3)] + [envelope(app, message_event(user={"id": 5}))]
    first = events_digest(envelopes=batch)
    again = events_digest(envelopes=batch + [copy.deepcopy(batch[0])])

    assert first.stored == 4
    assert (again.stored, again.duplicates) == (0, 5)
    issue = Issue.objects.get(app=app, culprit="bench.views.error")
    assert issue.event_count == 3
    assert sum(IssueHourly.objects.filter(issue=issue).values_list("count", flat=True)) == 3
    assert Issue.objects.get(app=app, title="Cache miss for key").users_count == 1
    assert Event.objects.filter(app=app).count() == 4


def test_redelivered_events_are_not_scrubbed_again_and_stay_as_stored(monkeypatch):
    _, _, app = org_app_create()
    secret = "redelivered-pw-1"
    body = message_event("Login failed", extra={"password": secret, "note": "kept"})
    batch = [envelope(app, copy.deepcopy(body)), envelope(app, fixture_body(DJANGO_311))]
    first = events_digest(envelopes=copy.deepcopy(batch))
    stored = {event.event_id: event.data for event in Event.objects.filter(app=app)}
    scrubbed = []
    real_scrub = digest_module.event_scrub

    def counting_scrub(*, event, scrubber):
        scrubbed.append(event)
        return real_scrub(event=event, scrubber=scrubber)

    monkeypatch.setattr(digest_module, "event_scrub", counting_scrub)
    fresh = envelope(app, message_event("Login failed", extra={"password": "fresh-pw-2"}))
    again = events_digest(envelopes=copy.deepcopy(batch) + [fresh])

    assert (first.stored, again.stored, again.duplicates) == (2, 1, 2)
    # Only the new event went through the scrubber; the redelivered ones were told by their ids.
    assert len(scrubbed) == 1
    redelivered = Event.objects.filter(app=app).exclude(event_id=uuid.UUID(fresh["event_id"]))
    assert {event.event_id: event.data for event in redelivered} == stored
    texts = json.dumps([event.data for event in Event.objects.filter(app=app)])
    assert secret not in texts and "fresh-pw-2" not in texts and '"note": "kept"' in texts
    assert Issue.objects.get(app=app, title="Login failed").event_count == 2


def test_same_event_twice_in_one_batch_counts_once():
    _, _, app = org_app_create()
    one = envelope(app, message_event())
    result = events_digest(envelopes=[one, dict(one)])
    assert (result.stored, result.duplicates) == (1, 1)
    assert Issue.objects.get(app=app).event_count == 1


def test_resolved_issue_regresses_and_ignored_stays_ignored():
    _, _, app = org_app_create()
    events_digest(envelopes=[envelope(app, message_event("A")), envelope(app, message_event("B"))])
    Issue.objects.filter(app=app, title="A").update(status=Issue.Status.RESOLVED, resolved_at=utc(2026, 1, 1))
    Issue.objects.filter(app=app, title="B").update(status=Issue.Status.IGNORED)

    events_digest(envelopes=[envelope(app, message_event("A")), envelope(app, message_event("B"))])

    a, b = Issue.objects.get(app=app, title="A"), Issue.objects.get(app=app, title="B")
    assert a.status == Issue.Status.UNRESOLVED and a.is_regressed and a.regressed_at is not None
    assert a.event_count == 2
    assert b.status == Issue.Status.IGNORED and not b.is_regressed and b.event_count == 2


def test_event_received_before_the_resolve_does_not_reopen():
    _, _, app = org_app_create()
    events_digest(envelopes=[envelope(app, message_event("A"), at=utc(2026, 11, 20, 10))])
    Issue.objects.filter(app=app).update(status=Issue.Status.RESOLVED, resolved_at=utc(2026, 11, 20, 12))
    # Accepted at 11:00, before the resolve at 12:00, digested only now (a queue backlog).
    events_digest(envelopes=[envelope(app, message_event("A"), at=utc(2026, 11, 20, 11))])
    issue = Issue.objects.get(app=app)
    assert issue.status == Issue.Status.RESOLVED and not issue.is_regressed and issue.event_count == 2
    events_digest(envelopes=[envelope(app, message_event("A"), at=utc(2026, 11, 20, 12, 30))])
    issue.refresh_from_db()
    assert issue.status == Issue.Status.UNRESOLVED and issue.is_regressed and issue.event_count == 3


def test_redelivery_after_resolving_does_not_reopen():
    _, _, app = org_app_create()
    batch = [envelope(app, message_event("A"))]
    events_digest(envelopes=batch)
    Issue.objects.filter(app=app).update(status=Issue.Status.RESOLVED)
    events_digest(envelopes=batch)
    issue = Issue.objects.get(app=app)
    assert issue.status == Issue.Status.RESOLVED and not issue.is_regressed and issue.event_count == 1


def test_users_count_is_distinct_users_across_batches():
    _, _, app = org_app_create()
    users = [{"id": 1}, {"id": 2}, {"id": 1}, {"email": "c@example.com"}, {}]
    events_digest(envelopes=[envelope(app, message_event(user=user)) for user in users])
    assert Issue.objects.get(app=app).users_count == 3
    events_digest(envelopes=[envelope(app, message_event(user=user)) for user in ({"id": 2}, {"id": 3})])
    issue = Issue.objects.get(app=app)
    assert issue.users_count == 4
    assert IssueUser.objects.filter(issue=issue).count() == 4


def test_hourly_counts_first_and_last_seen():
    _, _, app = org_app_create()
    times = [utc(2026, 11, 20, 10, 40), utc(2026, 11, 20, 10, 5), utc(2026, 11, 20, 11, 10)]
    events_digest(envelopes=[envelope(app, message_event(), at=at) for at in times])
    events_digest(envelopes=[envelope(app, message_event(), at=utc(2026, 11, 20, 9, 59, 59))])
    events_digest(envelopes=[envelope(app, message_event(), at=utc(2026, 11, 20, 11, 59))])

    issue = Issue.objects.get(app=app)
    hourly = dict(IssueHourly.objects.filter(issue=issue).values_list("hour", "count"))
    assert hourly == {utc(2026, 11, 20, 9): 1, utc(2026, 11, 20, 10): 2, utc(2026, 11, 20, 11): 2}
    assert IssueHourly.objects.filter(app=app).count() == 3
    assert issue.first_seen == utc(2026, 11, 20, 9, 59, 59)
    assert issue.last_seen == utc(2026, 11, 20, 11, 59)
    assert issue.event_count == 5


def test_issues_are_per_app():
    _, _, one = org_app_create()
    _, _, two = org_app_create()
    events_digest(envelopes=[envelope(one, fixture_body(DJANGO_36)), envelope(two, fixture_body(DJANGO_36))])
    assert Issue.objects.get(app=one).event_count == 1
    assert Issue.objects.get(app=two).event_count == 1


def test_a_batch_with_bad_envelopes_stores_the_good_ones():
    _, _, app = org_app_create()
    _, _, gone = org_app_create()
    gone_id = gone.pk
    gone.delete()
    good = envelope(app, fixture_body(DJANGO_311))
    future = envelope(app, message_event("from the future", timestamp="2999-01-01T00:00:00Z"))
    nul = envelope(app, message_event("nul\x00byte", extra={"k\x00": "v\x00", "s": "\ud800 lone"}))
    bad = [
        "not an object",
        None,
        {**good, "event_id": uuid.uuid4().hex, "v": 2},
        {**good, "event_id": uuid.uuid4().hex, "kind": "transaction"},
        {**good, "event_id": "not-a-uuid"},
        {**good, "event_id": uuid.uuid4().hex, "app_id": "1"},
        {**good, "event_id": uuid.uuid4().hex, "data": []},
        {**good, "event_id": uuid.uuid4().hex, "received_at": "yesterday"},
        {k: v for k, v in good.items() if k != "data"} | {"event_id": uuid.uuid4().hex},
        {**good, "event_id": uuid.uuid4().hex, "app_id": gone_id},
    ]
    result = events_digest(envelopes=bad[:5] + [good, future, nul] + bad[5:])

    assert (result.stored, result.skipped) == (3, len(bad))
    assert Event.objects.filter(app=app).count() == 3
    stored_future = Event.objects.get(event_id=uuid.UUID(future["event_id"]))
    assert stored_future.timestamp.year < 2999  # a client clock far ahead is replaced by the receive time
    stored_nul = Event.objects.get(event_id=uuid.UUID(nul["event_id"]))
    assert stored_nul.title == "nulbyte"
    assert stored_nul.data["extra"]["k"] == "v"


def test_one_row_the_database_refuses_costs_only_itself(monkeypatch):
    _, _, app = org_app_create()
    batch = [envelope(app, message_event(f"event {i}th")) for i in range(4)]
    poisoned = uuid.UUID(batch[2]["event_id"])
    real_insert = digest_module._events_insert

    def refusing_insert(rows, issue_ids):
        # Stands in for a row the database rejects (a constraint or a value it cannot store).
        if any(row.event_id == poisoned for row in rows):
            raise IntegrityError("refused for the test")
        return real_insert(rows, issue_ids)

    monkeypatch.setattr(digest_module, "_events_insert", refusing_insert)
    result = events_digest(envelopes=batch)

    assert (result.stored, result.skipped) == (3, 1)
    assert not Event.objects.filter(event_id=poisoned).exists()
    # The refused event's issue upsert was rolled back with it: counts match the stored events.
    assert Issue.objects.get(app=app).event_count == 3


def test_many_apps_and_groups_in_one_batch_use_a_bounded_number_of_queries(django_assert_max_num_queries):
    apps = [org_app_create()[2] for _ in range(5)]
    batch = [
        envelope(app, message_event(f"failure kind {chr(65 + i % 20)}", user={"id": i % 7}))
        for i in range(400)
        for app in [apps[i % 5]]
    ]
    # Apps, existing ids, issues, events, hourly, users, users_count, issue environments,
    # minutes (+ savepoint; the environment names only when events name one): not per event.
    with django_assert_max_num_queries(12):
        result = events_digest(envelopes=batch)
    assert result.stored == 400
    assert Issue.objects.count() == 5 * 4
    assert sum(Issue.objects.values_list("event_count", flat=True)) == 400
