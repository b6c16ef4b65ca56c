"""Pruning, rejection counters, and the batch task as the worker calls it (real database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError

from processing import resilience
from processing.digest import events_digest
from processing.models import Event, Issue, IssueHourly, RejectionCount
from processing.services import events_prune, rejections_record
from processing.tasks import events_digest as events_digest_task
from tests.factories import org_app_create
from tests.processing.helpers import envelope, utc

pytestmark = pytest.mark.django_db


def limits(settings, **overrides):
    settings.OPBEAT_LIMITS = {**settings.OPBEAT_LIMITS, **overrides}


def test_prune_keeps_the_newest_events_of_each_issue(settings):
    limits(settings, events_kept_per_issue=3, event_retention_days=90)
    _, _, app = org_app_create()
    now = utc(2026, 11, 26, 12)
    busy = [envelope(app, {"message": "busy"}, at=now - timedelta(minutes=m)) for m in range(6)]
    quiet = [envelope(app, {"message": "quiet"}, at=now - timedelta(minutes=m)) for m in range(2)]
    events_digest(envelopes=busy + quiet)

    result = events_prune(now=now)

    assert result["surplus"] == 3
    busy_issue = Issue.objects.get(app=app, title="busy")
    kept = sorted(Event.objects.filter(issue=busy_issue).values_list("timestamp", flat=True), reverse=True)
    assert kept == [now - timedelta(minutes=m) for m in range(3)]
    assert Event.objects.filter(issue__title="quiet").count() == 2
    # The issue's totals describe every event ever digested, pruned or not.
    assert busy_issue.event_count == 6
    assert events_prune(now=now)["surplus"] == 0


def test_prune_deletes_events_and_hourly_counts_past_retention(settings):
    limits(settings, events_kept_per_issue=100, event_retention_days=30)
    _, _, app = org_app_create()
    now = utc(2026, 11, 26, 12)
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    events_digest(envelopes=[envelope(app, {"message": "m"}, at=old), envelope(app, {"message": "m"}, at=recent)])

    result = events_prune(now=now)

    assert result["expired"] == 1
    assert list(Event.objects.filter(app=app).values_list("timestamp", flat=True)) == [recent]
    assert list(IssueHourly.objects.filter(app=app).values_list("hour", flat=True)) == [recent.replace(minute=0)]
    assert Issue.objects.get(app=app).event_count == 2


def test_rejections_are_added_up_per_app_reason_and_hour():
    _, _, app = org_app_create()
    hour = utc(2026, 11, 26, 10).timestamp()
    rows = [
        {"app_id": app.pk, "reason": "rate_limited", "hour": hour, "count": 5},
        {"app_id": app.pk, "reason": "rate_limited", "hour": hour + 1800, "count": 2},
        {"app_id": app.pk, "reason": "too_large", "hour": hour, "count": 1},
        {"app_id": app.pk, "reason": "too_large", "hour": hour, "count": "lots"},
        {"app_id": 10**9, "reason": "rate_limited", "hour": hour, "count": 1},
        "garbage",
    ]
    assert rejections_record(rows=rows) == 2
    rejections_record(rows=rows[:1])
    counts = dict(RejectionCount.objects.filter(app=app).values_list("reason", "count"))
    assert counts == {"rate_limited": 12, "too_large": 1}
    assert RejectionCount.objects.get(app=app, reason="rate_limited").hour == utc(2026, 11, 26, 10)


def test_batch_task_digests_the_envelopes_of_every_message():
    _, _, app = org_app_create()
    first = [envelope(app, {"message": "one"}), envelope(app, {"message": "two"})]
    second = [envelope(app, {"message": "one"})]
    # .apply runs the Batches task in-process as a batch of one request with these args.
    result = events_digest_task.apply(args=(first + second,)).get()
    assert result == {"stored": 3, "duplicates": 0, "skipped": 0}
    assert Issue.objects.get(app=app, title="one").event_count == 2


def pauses_recorder(limit: int = 20):
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        # A loop that never recovers must fail the test, not fill the memory.
        assert len(pauses) < limit, "database_patiently kept retrying"
        pauses.append(seconds)

    return pauses, sleep


def test_batch_task_stores_a_large_batch_in_bounded_transactions(settings):
    limits(settings, digest_batch_size=4)
    _, _, app = org_app_create()
    batch = [envelope(app, {"message": f"kind {'ABC'[i % 3]}"}) for i in range(10)]
    result = events_digest_task.apply(args=(batch + batch[:2],)).get()
    assert result == {"stored": 10, "duplicates": 2, "skipped": 0}
    assert sorted(Issue.objects.filter(app=app).values_list("event_count", flat=True)) == [3, 3, 4]


@pytest.mark.django_db(transaction=True)
def test_database_patiently_repeats_on_a_fresh_connection_until_the_database_answers():
    pauses, sleep = pauses_recorder()
    attempts = {"n": 0}

    def flaky() -> int:
        attempts["n"] += 1
        if attempts["n"] < 4:
            Issue.objects.count()  # a live connection, which must be replaced after the failure
            raise OperationalError("server closed the connection unexpectedly")
        return Issue.objects.count()

    assert resilience.database_patiently(flaky, what="test", sleep=sleep) == 0
    assert pauses == [0.5, 1.0, 2.0]


def test_database_patiently_inside_a_transaction_gives_the_error_back():
    pauses, sleep = pauses_recorder()

    def down() -> None:
        raise OperationalError("server closed the connection unexpectedly")

    # pytest-django wraps this test in a transaction, like a caller holding one would.
    with pytest.raises(OperationalError):
        resilience.database_patiently(down, what="test", sleep=sleep)
    assert pauses == []


def test_database_patiently_does_not_hide_other_errors():
    def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        resilience.database_patiently(broken, what="test", sleep=lambda _: None)


def test_rejection_rows_keep_the_latest_example_per_app_reason_and_hour():
    _, _, app = org_app_create()
    hour = utc(2026, 11, 26, 10).timestamp()
    rejections_record(rows=[
        {"app_id": app.pk, "reason": "invalid", "hour": hour, "count": 2, "status": 400, "example": "first"},
        {"app_id": app.pk, "reason": "invalid", "hour": hour, "count": 1, "status": 415, "example": "second\x00" + "x" * 400},
    ])  # fmt: skip
    row = RejectionCount.objects.get(app=app, reason="invalid")
    assert (row.count, row.status, row.example) == (3, 415, "second" + "x" * 294)
    # A row without an example (an intake older than examples) adds its count and keeps the example.
    rejections_record(rows=[{"app_id": app.pk, "reason": "invalid", "hour": hour, "count": 4}])
    rejections_record(rows=[{"app_id": app.pk, "reason": "invalid", "hour": hour, "count": 1, "status": "400", "example": "bad status"}])
    row = RejectionCount.objects.get(app=app, reason="invalid")
    assert (row.count, row.status, row.example) == (8, 415, "second" + "x" * 294)
