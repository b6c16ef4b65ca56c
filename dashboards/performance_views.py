"""The performance pages: an app's overview (throughput, response times, the table of transaction
names) and one transaction name's page (its charts, latency histogram, time by span kind, slowest
traces and a trace's waterfall). Thin: resolve the app for the member (another organization's app
or transaction is a 404), parse the range, call ``dashboards.performance``, render.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.utils import timezone

from accounts.selectors import app_for_member

from . import performance as perf
from .charts import rate_of
from .environments import environment_filter_resolve
from .selectors import id_parse

LINE_CSS = {"avg": "avg", "p50": "p50", "p95": "p95", "p99": "p99", "requests/min": "rpm", "requests/h": "rpm"}


def _range_links(time_range: perf.TimeRange, extra: dict | None = None) -> list[tuple[str, str, bool]]:
    links = []
    for key in perf.RANGES:
        params = {**(extra or {}), "range": key}
        links.append((key, "?" + urlencode(params), key == time_range.key))
    return links


def _range_params(time_range: perf.TimeRange) -> dict:
    if time_range.key != "custom":
        return {"range": time_range.key}
    return {"from": time_range.start.strftime("%Y-%m-%dT%H:%M"), "to": time_range.end.strftime("%Y-%m-%dT%H:%M")}


def _charts(*, app, name, time_range, markers, with_spans: bool = False, environment: str = ""):
    points, overall = perf.series(
        app=app, name=name, time_range=time_range, with_spans=with_spans, environment=environment
    )
    # The newest bucket is still filling up: its rate is over the minutes elapsed, not the step.
    now = timezone.now()
    minutes = [max(min(time_range.step, (now - start).total_seconds()), 60) / 60 for start in time_range.buckets]
    per_minute = [point.count / span if point.count else 0.0 for point, span in zip(points, minutes)]
    # Per hour when even the busiest bucket has less than a request a minute, as in the table.
    if 0 < max(per_minute, default=0.0) < 1:
        label, values, y_label = "requests/h", [value * 60 for value in per_minute], "requests per hour"
    else:
        label, values, y_label = "requests/min", per_minute, "requests per minute"
    throughput = perf.line_chart_build(
        series_values={label: values}, css=LINE_CSS, unit="requests", time_range=time_range, markers=markers, y_label=y_label,
    )  # fmt: skip
    latency = perf.line_chart_build(
        series_values={
            "avg": [point.avg for point in points],
            "p50": [point.p50 for point in points],
            "p95": [point.p95 for point in points],
            "p99": [point.p99 for point in points],
        },
        css=LINE_CSS, unit="ms", time_range=time_range, markers=markers, y_label="response time",
    )  # fmt: skip
    return points, overall, throughput, latency


@login_required
def performance_overview(request: HttpRequest, org_id: str, app_id: str) -> HttpResponse:
    app = app_for_member(request.user, org_id, app_id)
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    time_range, problem = perf.time_range_parse(request.GET)
    sort = request.GET.get("sort", "impact")
    if sort not in perf.TABLE_SORTS:
        sort = "impact"
    range_params = _range_params(time_range)
    environments = environment_filter_resolve(
        user=request.user, app=app, params=request.GET, keep={**range_params, "sort": sort}
    )
    environment = environments.current
    rows, totals, capped = perf.names_table(app=app, time_range=time_range, sort=sort, environment=environment)
    markers = perf.release_markers(app=app, time_range=time_range, environment=environment)
    total = perf.total_name(app=app)
    charts = (
        _charts(app=app, name=total, time_range=time_range, markers=markers, environment=environment) if total else None
    )
    return render(
        request,
        "dashboards/performance.html",
        {
            "app": app,
            "organization": app.organization,
            "time_range": time_range,
            "range_problem": problem,
            "range_links": _range_links(time_range, {"sort": sort}),
            "range_query": urlencode(range_params),
            "sort": sort,
            "sort_links": [(key, label, "?" + urlencode({**range_params, "sort": key})) for key, label in perf.TABLE_SORTS.items()],
            "rows": rows,
            "totals": totals,
            "rate": rate_of(count=totals.count, minutes=time_range.minutes_elapsed()),
            "capped": capped,
            "names_cap": settings.OPBEAT_LIMITS["transaction_names_per_app"],
            "throughput": charts[2] if charts else None,
            "latency": charts[3] if charts else None,
            "markers": markers,
            "environments": environments,
        },
    )


@login_required
def transaction_detail(request: HttpRequest, org_id: str, app_id: str, transaction_id: int) -> HttpResponse:
    app = app_for_member(request.user, org_id, app_id)
    name = perf.transaction_name_for_app(app=app, name_id=transaction_id)
    if name is None:
        raise Http404("No such transaction")
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    time_range, problem = perf.time_range_parse(request.GET)
    range_params = _range_params(time_range)
    environments = environment_filter_resolve(user=request.user, app=app, params=request.GET, keep=range_params)
    environment = environments.current
    markers = perf.release_markers(app=app, time_range=time_range, environment=environment)
    points, overall, throughput, latency = _charts(
        app=app, name=name, time_range=time_range, markers=markers, with_spans=True, environment=environment
    )
    kind_chart, kinds, kinds_peak = perf.stacked_chart_build(points=points, time_range=time_range)
    traces = perf.slowest_traces(name=name, time_range=time_range, environment=environment)
    selected = None
    trace_param = request.GET.get("trace", "")
    if trace_param:
        trace_id = id_parse(trace_param)
        if trace_id is None:
            raise Http404("No such trace")
        selected = perf.trace_for_name(name=name, trace_id=trace_id)
        if selected is None:
            raise Http404("No such trace")
    elif traces:
        selected = perf.trace_for_name(name=name, trace_id=traces[0].id)
    return render(
        request,
        "dashboards/transaction.html",
        {
            "app": app,
            "organization": app.organization,
            "name": name,
            "time_range": time_range,
            "range_problem": problem,
            "range_links": _range_links(time_range),
            "range_query": urlencode(range_params),
            "stats": overall,
            "rate": rate_of(count=overall.count, minutes=time_range.minutes_elapsed()),
            "throughput": throughput,
            "latency": latency,
            "histogram": perf.histogram_build(sketch=overall.sketch),
            "kind_chart": kind_chart,
            "kinds": list(perf.kind_colours(kinds).items()),
            "kinds_total": [
                (kind, ms, perf.kind_colours(kinds).get(kind, "#ccc"))
                for kind, ms in sorted(overall.kinds_avg().items(), key=lambda item: -item[1])
            ],
            "kinds_peak": kinds_peak,
            "traces": traces,
            "trace": selected,
            "waterfall": perf.waterfall_build(selected) if selected else [],
            "environments": environments,
        },
    )
