"""The dashboard's pages: thin views that resolve the app for the logged-in member
(``accounts.selectors.app_for_member``: another organization's app is a 404), call selectors,
and render. The only write is the status form, through ``services.issue_status_set``.

The app is resolved before anything else, the HTTP method included, so a member of another
organization gets the same 404 for GET and POST on every URL and learns nothing from a 405.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from accounts.selectors import app_for_member

from . import selectors
from .charts import bar_chart_build, hours_window
from .environments import environment_filter_resolve
from .eventview import event_view_build
from .issue_actions import issue_release_resolution_clear
from .releases import bar_chart_markers, issue_followup_context, release_markers
from .services import STATUS_ACTIONS, issue_status_set

CHART_RANGES = {"24h": 24, "7d": 24 * 7}
SPARKLINE_HOURS = 24
# The "being processed" page reloads itself until the worker has stored the event.
PENDING_REFRESH_SECONDS = 2


@login_required
def issue_list(request: HttpRequest, org_id: str, app_id: str) -> HttpResponse:
    app = app_for_member(request.user, org_id, app_id)
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    query = selectors.issue_list_query_parse(request.GET)
    chart_range = request.GET.get("range", "24h")
    if chart_range not in CHART_RANGES:
        query.problems.append(f"The range must be one of {', '.join(CHART_RANGES)}; showing 24h.")
        chart_range = "24h"

    environments = environment_filter_resolve(
        user=request.user,
        app=app,
        params=request.GET,
        keep={"status": query.status, "sort": query.sort, "q": query.search, "range": chart_range},
    )
    environment = environments.current

    page, issue_rows = selectors.issues_page(app=app, query=query, environment=environment)
    spark_hours = hours_window(hours=SPARKLINE_HOURS)
    hourly = selectors.issues_hourly_counts(
        app=app, issue_ids=[row.issue.id for row in issue_rows], since=spark_hours[0], environment=environment
    )
    rows = [
        {
            "issue": row.issue,
            "row": row,
            "chart": bar_chart_build(counts=hourly.get(row.issue.id, {}), buckets=spark_hours, width=96, height=20),
        }
        for row in issue_rows
    ]
    chart_hours = hours_window(hours=CHART_RANGES[chart_range])
    app_chart = bar_chart_build(
        counts=selectors.app_hourly_counts(app=app, since=chart_hours[0], environment=environment),
        buckets=chart_hours,
        width=720,
        height=120,
        y_label="errors per hour",
    )
    bar_chart_markers(
        chart=app_chart,
        markers=release_markers(app=app, start=app_chart.start, end=app_chart.end, environment=environment),
    )

    def list_url(**changes) -> str:
        # The environment is remembered, so links need not carry it.
        params = {"status": query.status, "sort": query.sort, "q": query.search, "range": chart_range, "page": 1}
        params.update(changes)
        return "?" + urlencode({key: value for key, value in params.items() if value not in ("", None)})

    return render(
        request,
        "dashboards/issue_list.html",
        {
            "app": app,
            "organization": app.organization,
            "query": query,
            "page": page,
            "rows": rows,
            "app_chart": app_chart,
            "chart_range": chart_range,
            "range_links": [(name, list_url(range=name, page=query.page)) for name in CHART_RANGES],
            "status_links": [(status, list_url(status=status)) for status in selectors.ISSUE_STATUSES],
            "sort_links": [(sort, selectors.ISSUE_SORT_LABELS[sort], list_url(sort=sort)) for sort in selectors.ISSUE_SORTS],
            "previous_url": list_url(page=page.previous_page_number()) if page.has_previous() else "",
            "next_url": list_url(page=page.next_page_number()) if page.has_next() else "",
            "exception_types": selectors.app_exception_types(app=app, environment=environment),
            "environments": environments,
            "rejections": selectors.app_rejections(app=app, since=chart_hours[0]),
        },
    )


@login_required
def issue_detail(
    request: HttpRequest, org_id: str, app_id: str, issue_id: int, event_id: uuid.UUID | None = None
) -> HttpResponse:
    """The issue page, showing its latest event, or ``event_id`` when given (``issue_event``)."""
    app, issue = selectors.app_issue_for_member(request.user, org_id, app_id, issue_id)
    if event_id is None:
        event = None
    else:
        event = selectors.issue_event(issue=issue, event_id=event_id)
        if event is None:
            raise Http404("No such event")
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    environments = environment_filter_resolve(user=request.user, app=app, params=request.GET)
    environment = environments.current
    seen_in = selectors.issue_environments(issue=issue)
    in_environment = next((row for row in seen_in if row.environment == environment), None) if environment else None
    # An issue never seen in the chosen environment has no event there: no walk through its events.
    if event_id is None and (not environment or in_environment is not None):
        event = selectors.issue_latest_event(issue=issue, environment=environment)
    previous_id, next_id = selectors.event_neighbours(event=event, environment=environment) if event else (None, None)
    chart_hours = hours_window(hours=24)
    chart = bar_chart_build(
        counts=selectors.issue_hourly_counts(issue=issue, since=chart_hours[0], environment=environment),
        buckets=chart_hours,
        width=480,
        height=100,
        y_label="events per hour",
    )
    bar_chart_markers(
        chart=chart, markers=release_markers(app=app, start=chart.start, end=chart.end, environment=environment)
    )

    def event_url(target: uuid.UUID | None) -> str:
        if target is None:
            return ""
        return reverse("dashboards:issue_event", args=[app.organization.public_id, app.public_id, issue.id, target])

    return render(
        request,
        "dashboards/issue_detail.html",
        {
            "app": app,
            "organization": app.organization,
            "issue": issue,
            "event": event,
            "view": event_view_build(event.data) if event else None,
            "previous_url": event_url(previous_id),
            "next_url": event_url(next_id),
            "chart": chart,
            "environments": environments,
            "seen_in": seen_in,
            "in_environment": in_environment,
            "actions": [action for action, status in STATUS_ACTIONS.items() if status != issue.status],
            **issue_followup_context(app=app, issue=issue),
        },
    )


@login_required
def event_redirect(request: HttpRequest, org_id: str, app_id: str, event_id: uuid.UUID) -> HttpResponse:
    """Where the intake's ``Location`` header points: the event on its issue page once digested,
    until then a page that says so and reloads itself."""
    app = app_for_member(request.user, org_id, app_id)
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    issue_id = selectors.event_issue_id(app=app, event_id=event_id)
    if issue_id is not None:
        return redirect("dashboards:issue_event", app.organization.public_id, app.public_id, issue_id, event_id)
    return render(
        request,
        "dashboards/event_pending.html",
        {
            "app": app,
            "organization": app.organization,
            "event_id": event_id,
            "refresh_seconds": PENDING_REFRESH_SECONDS,
        },
    )


@login_required
def issue_status(request: HttpRequest, org_id: str, app_id: str, issue_id: int) -> HttpResponse:
    """POST action=resolve|ignore|reopen; back to where the form was (the issue page by default)."""
    app, issue = selectors.app_issue_for_member(request.user, org_id, app_id, issue_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    action = request.POST.get("action", "")
    if action not in STATUS_ACTIONS:
        return HttpResponse(
            f"Unknown action; use one of: {', '.join(STATUS_ACTIONS)}.", status=400, content_type="text/plain"
        )
    issue_status_set(issue=issue, status=STATUS_ACTIONS[action])
    # A plain resolve or reopen replaces a "resolve in the next release".
    issue_release_resolution_clear(issue=issue)
    target = request.POST.get("next", "")
    # A path on this site only: redirect() would take "0" or "home" for a view name to reverse.
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("dashboards:issue_detail", args=[app.organization.public_id, app.public_id, issue.id])
    return HttpResponseRedirect(target)
