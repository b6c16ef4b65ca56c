"""The dashboard's queries. Each takes an ``App`` already resolved for the member through
``accounts.selectors.app_for_member`` (or an issue fetched here through that app), and filters on
it first, each condition on its own line, so every query is visibly scoped to one app.

Each selector is one query, whatever the number of issues or events, and stays on an index the
worker's tables already have (noted next to each). This module never writes.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet, Sum
from django.http import Http404

from accounts.models import App
from accounts.selectors import app_for_member
from processing.models import Event, Issue, IssueEnvironment, IssueHourly, RejectionCount

from .charts import hour_floor

class CounterSum(Sum):
    """SUM of 64-bit counters. PostgreSQL sums bigints as numeric; SQLite's SUM raises "integer
    overflow" past 2**63 and would take the page down, so there it is TOTAL (a float)."""

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function="TOTAL", **extra_context)


def _count(value) -> int:
    # TOTAL is a float and numeric sums may be Decimal: the page shows whole numbers.
    return int(value or 0)


ISSUE_SORTS = {
    # sort name -> ordering; each is backed by an (app, status, <column>) index on Issue.
    "last_seen": ("-last_seen", "-id"),
    "first_seen": ("-first_seen", "-id"),
    "count": ("-event_count", "-id"),
}
# The same sorts on one environment's figures, on the (app, environment, last_seen) index of
# IssueEnvironment (the other two sort that environment's rows).
ISSUE_ENVIRONMENT_SORTS = {
    "last_seen": ("-last_seen", "-issue_id"),
    "first_seen": ("-first_seen", "-issue_id"),
    "count": ("-count", "-issue_id"),
}
ISSUE_SORT_LABELS = {"last_seen": "Last seen", "first_seen": "First seen", "count": "Events"}
ISSUE_STATUSES = [choice for choice, _label in Issue.Status.choices]
ISSUES_PER_PAGE = 25
SEARCH_MAX_CHARS = 200


def id_parse(value: object) -> int | None:
    """A row id typed by a person (query string or form), or None: ASCII digits only ("²" is a
    digit to ``str.isdigit`` but not to ``int``) and at most 18 of them, so the lookup stays in
    the 64-bit range every database takes."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def text_param(value: str, *, limit: int) -> str:
    """A text typed by a person, as a query can compare it: NUL removed (PostgreSQL text cannot
    hold it, so no stored value contains one, and psycopg refuses it in a parameter), capped."""
    return value.replace("\x00", "")[:limit]


@dataclass
class IssueListQuery:
    status: str = Issue.Status.UNRESOLVED
    sort: str = "last_seen"
    search: str = ""
    page: int = 1
    # What was asked for but could not be shown, in words for the page.
    problems: list[str] = field(default_factory=list)


def issue_list_query_parse(params) -> IssueListQuery:
    """The list's filters from the query string; unknown values fall back to the defaults, and
    a malformed page number says so."""
    status = params.get("status", Issue.Status.UNRESOLVED)
    sort = params.get("sort", "last_seen")
    problems = []
    page = id_parse(params.get("page", "1").strip())
    if page is None or page < 1:
        problems.append("The page must be a number from 1; showing the first page.")
        page = 1
    return IssueListQuery(
        problems=problems,
        status=status if status in ISSUE_STATUSES else Issue.Status.UNRESOLVED,
        sort=sort if sort in ISSUE_SORTS else "last_seen",
        search=text_param(params.get("q", "").strip(), limit=SEARCH_MAX_CHARS),
        page=page,
    )


def issues_filter(*, app: App, query: IssueListQuery) -> QuerySet[Issue]:
    issues = Issue.objects.filter(
        app=app,
        status=query.status,
    )
    if query.search:
        # A substring search over one app's issues of one status: bounded by the (app, status) index
        # prefix; a trigram index would be the next step for apps with very many issues.
        issues = issues.filter(Q(title__icontains=query.search) | Q(culprit__icontains=query.search))
    return issues.order_by(*ISSUE_SORTS[query.sort]).only(
        "id", "title", "culprit", "level", "exception_type", "status", "is_regressed",
        "event_count", "users_count", "first_seen", "last_seen",
    )


def issue_environments_filter(*, app: App, query: IssueListQuery, environment: str) -> QuerySet[IssueEnvironment]:
    """The issues seen in ``environment``, with their figures there, sorted by those."""
    rows = IssueEnvironment.objects.filter(
        app=app,
        environment=environment,
        issue__app=app,
        issue__status=query.status,
    )
    if query.search:
        rows = rows.filter(Q(issue__title__icontains=query.search) | Q(issue__culprit__icontains=query.search))
    return rows.select_related("issue").order_by(*ISSUE_ENVIRONMENT_SORTS[query.sort])


@dataclass
class IssueRow:
    """An issue as the list shows it: its figures in the chosen environment, or in all."""

    issue: Issue
    events: int
    first_seen: datetime
    last_seen: datetime


def issues_page(*, app: App, query: IssueListQuery, environment: str = "") -> tuple[Page, list[IssueRow]]:
    """Two queries: the count of matching issues, then one page of them."""
    if environment:
        source = issue_environments_filter(app=app, query=query, environment=environment)
    else:
        source = issues_filter(app=app, query=query)
    paginator = Paginator(source, ISSUES_PER_PAGE)
    page = paginator.get_page(query.page)
    if page.number != query.page:
        query.problems.append(f"There is no page {query.page}; showing page {page.number}.")
    if environment:
        rows = [
            IssueRow(issue=item.issue, events=item.count, first_seen=item.first_seen, last_seen=item.last_seen)
            for item in page.object_list
        ]
    else:
        rows = [
            IssueRow(issue=issue, events=issue.event_count, first_seen=issue.first_seen, last_seen=issue.last_seen)
            for issue in page.object_list
        ]
    return page, rows


def issues_hourly_counts(
    *, app: App, issue_ids: list[int], since: datetime, environment: str = ""
) -> dict[int, dict[datetime, int]]:
    """Hourly counts of many issues in ONE query (the list's sparklines), on the
    (issue, environment, hour) unique index; all environments' rows add up when none is given."""
    if not issue_ids:
        return {}
    rows = IssueHourly.objects.filter(
        app=app,
        issue_id__in=issue_ids,
        hour__gte=since,
    )
    if environment:
        rows = rows.filter(environment=environment)
    rows = rows.values_list("issue_id", "hour", "count")
    counts: dict[int, dict[datetime, int]] = defaultdict(dict)
    for issue_id, hour, count in rows:
        bucket = hour_floor(hour)
        counts[issue_id][bucket] = counts[issue_id].get(bucket, 0) + count
    return counts


def app_hourly_counts(*, app: App, since: datetime, environment: str = "") -> dict[datetime, int]:
    """Events per hour of the whole app (or of one environment), on the (app, hour) index of IssueHourly."""
    rows = IssueHourly.objects.filter(
        app=app,
        hour__gte=since,
    )
    if environment:
        rows = rows.filter(environment=environment)
    rows = (
        rows.values("hour")
        .annotate(total=Sum("count"))
        .values_list("hour", "total")
    )
    counts: dict[datetime, int] = {}
    for hour, total in rows:
        bucket = hour_floor(hour)
        counts[bucket] = counts.get(bucket, 0) + (total or 0)
    return counts


def issue_hourly_counts(*, issue: Issue, since: datetime, environment: str = "") -> dict[datetime, int]:
    rows = IssueHourly.objects.filter(
        app_id=issue.app_id,
        issue=issue,
        hour__gte=since,
    )
    if environment:
        rows = rows.filter(environment=environment)
    rows = rows.values_list("hour", "count")
    counts: dict[datetime, int] = {}
    for hour, count in rows:
        bucket = hour_floor(hour)
        counts[bucket] = counts.get(bucket, 0) + count
    return counts


def app_exception_types(*, app: App, limit: int = 8, environment: str = "") -> list[dict]:
    """The most common exception types by events, summed over the app's issues (one row per issue,
    or per issue and environment, so this reads issues, never events)."""
    if environment:
        per_environment = (
            IssueEnvironment.objects.filter(
                app=app,
                environment=environment,
                issue__app=app,
            )
            .exclude(issue__exception_type="")
            .values("issue__exception_type")
            .annotate(events=CounterSum("count"))
            .order_by("-events", "issue__exception_type")[:limit]
        )
        return [{"exception_type": row["issue__exception_type"], "events": _count(row["events"])} for row in per_environment]
    rows = (
        Issue.objects.filter(
            app=app,
        )
        .exclude(exception_type="")
        .values("exception_type")
        .annotate(events=CounterSum("event_count"))
        .order_by("-events", "exception_type")[:limit]
    )
    return [{**row, "events": _count(row["events"])} for row in rows]


def app_rejections(*, app: App, since: datetime) -> list[dict]:
    """Requests the intake refused since ``since``, per reason: the total, and the latest example
    (status, message, hour) so the owner can see what to fix in the agent.

    One query on the (app, reason, hour) unique index, added up here: at most a row per reason
    and hour of the range (a week of hours times a handful of reasons)."""
    by_reason: dict[str, dict] = {}
    rows = RejectionCount.objects.filter(
        app=app,
        hour__gte=since,
    ).values_list("reason", "hour", "count", "status", "example")
    for reason, hour, count, status, example in rows:
        entry = by_reason.setdefault(reason, {"reason": reason, "total": 0, "status": 0, "example": "", "example_hour": None})
        entry["total"] += _count(count)
        if example and (entry["example_hour"] is None or hour >= entry["example_hour"]):
            entry.update(status=status, example=example, example_hour=hour)
    return sorted(by_reason.values(), key=lambda entry: (-entry["total"], entry["reason"]))


def issue_for_app(*, app: App, issue_id: int) -> Issue | None:
    return Issue.objects.filter(
        app=app,
        pk=issue_id,
    ).first()


def app_issue_for_member(user, org_id: str, app_id: str, issue_id: int) -> tuple[App, Issue]:
    """The app (``app_for_member``) and its issue from an issue URL; 404 for another
    organization's app or another app's issue, before any other check of the request."""
    app = app_for_member(user, org_id, app_id)
    issue = issue_for_app(app=app, issue_id=issue_id)
    if issue is None:
        raise Http404("No such issue")
    return app, issue


def issue_environments(*, issue: Issue) -> list[IssueEnvironment]:
    """The environments the issue was seen in, the busiest first (one row each)."""
    return list(
        IssueEnvironment.objects.filter(
            app_id=issue.app_id,
            issue=issue,
        ).order_by("-count", "environment")
    )


def issue_latest_event(*, issue: Issue, environment: str = "") -> Event | None:
    """On the (issue, timestamp) index."""
    events = Event.objects.filter(
        app_id=issue.app_id,
        issue=issue,
    )
    if environment:
        events = events.filter(environment=environment)
    return events.order_by("-timestamp", "-id").first()


def issue_event(*, issue: Issue, event_id: uuid.UUID) -> Event | None:
    """On the unique event_id index."""
    return Event.objects.filter(
        app_id=issue.app_id,
        issue=issue,
        event_id=event_id,
    ).first()


def event_neighbours(*, event: Event, environment: str = "") -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(the previous, the next) event of the same issue (in ``environment`` when given) by time,
    ids broken by id. Two small queries walking the (issue, timestamp) index one row each way."""
    same_issue = Event.objects.filter(
        app_id=event.app_id,
        issue_id=event.issue_id,
    )
    if environment:
        same_issue = same_issue.filter(environment=environment)
    previous = (
        # The plain range condition lets the index seek; the OR only breaks ties within one timestamp.
        same_issue.filter(timestamp__lte=event.timestamp)
        .filter(Q(timestamp__lt=event.timestamp) | Q(id__lt=event.id))
        .order_by("-timestamp", "-id")
        .values_list("event_id", flat=True)
        .first()
    )
    following = (
        same_issue.filter(timestamp__gte=event.timestamp)
        .filter(Q(timestamp__gt=event.timestamp) | Q(id__gt=event.id))
        .order_by("timestamp", "id")
        .values_list("event_id", flat=True)
        .first()
    )
    return previous, following


def event_issue_id(*, app: App, event_id: uuid.UUID) -> int | None:
    """Which issue holds this event, if the worker has stored it yet (unique event_id index)."""
    return Event.objects.filter(
        app=app,
        event_id=event_id,
    ).values_list("issue_id", flat=True).first()
