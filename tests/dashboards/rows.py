"""Rows the dashboard reads, made directly through the ORM the way the worker stores them
(Issue, Event with ``data`` = the event dict as the agent sent it, IssueHourly, RejectionCount)."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.models import App
from processing.models import Event, Issue, IssueHourly, RejectionCount
from tests.conftest import OPBEAT_FIXTURES

DJANGO_ERROR = "opbeat361-patched_py311_django5219_00_POST_errors.json"
LOG_MESSAGE = "opbeat361_py36_clientapi_01_POST_errors.json"


def fixture_event(name: str = DJANGO_ERROR) -> dict:
    """A real body sent by the original opbeat agent."""
    return json.loads((OPBEAT_FIXTURES / name).read_text())


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def issue_create(
    *,
    app: App,
    title: str = "ZeroDivisionError: division by zero",
    culprit: str = "bench.views.error",
    exception_type: str = "ZeroDivisionError",
    status: str = Issue.Status.UNRESOLVED,
    event_count: int = 1,
    users_count: int = 0,
    first_seen: datetime | None = None,
    last_seen: datetime | None = None,
    grouping_reason: str = "Grouped by exception type ZeroDivisionError and in-app frames bench.views.error",
) -> Issue:
    now = timezone.now()
    return Issue.objects.create(
        app=app,
        fingerprint=uuid.uuid4().hex[:40],
        grouping_reason=grouping_reason,
        title=title,
        culprit=culprit,
        exception_type=exception_type,
        status=status,
        event_count=event_count,
        users_count=users_count,
        first_seen=first_seen or now - timedelta(hours=2),
        last_seen=last_seen or now,
    )


def event_create(*, issue: Issue, data: dict | None = None, timestamp: datetime | None = None) -> Event:
    data = copy.deepcopy(data if data is not None else fixture_event())
    timestamp = timestamp or timezone.now()
    return Event.objects.create(
        event_id=uuid.uuid4(),
        app_id=issue.app_id,
        issue=issue,
        timestamp=timestamp,
        received_at=timestamp,
        title=issue.title,
        culprit=issue.culprit,
        release=str(data.get("release", "")),
        environment=str(data.get("environment", "")),
        data=data,
    )


def hourly_create(*, issue: Issue, counts: dict[datetime, int]) -> None:
    IssueHourly.objects.bulk_create(
        IssueHourly(app_id=issue.app_id, issue=issue, hour=hour_of(hour), count=count) for hour, count in counts.items()
    )


def rejection_create(*, app: App, reason: str, count: int, hour: datetime | None = None) -> None:
    RejectionCount.objects.create(app=app, reason=reason, hour=hour_of(hour or timezone.now()), count=count)
