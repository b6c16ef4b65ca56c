"""The releases pages (list, one release), the app's alerts page, the issue's assignment form,
and the read-side queries they need. Thin views: every id is resolved through
``accounts.selectors.app_for_member`` first, so another organization's release, issue or app is
a 404. Writes go through ``dashboards.issue_actions`` and the alert-settings form below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils import timezone

from accounts.models import App, Membership, User
from accounts.selectors import app_for_member
from processing.webhooks import webhook_target_refusal
from processing.models import (
    AlertSubscription,
    AppAlertSettings,
    Commit,
    CommitFile,
    EmailAlias,
    ErrorMinute,
    Event,
    Issue,
    IssueFollowup,
    Release,
    ReleaseCommit,
    TransactionRollup,
)
from processing.releases import release_delete

from . import selectors
from .charts import BarChart, figure_format, moment_shift
from .aliases import AliasRefused, alias_add
from .environments import environment_filter_resolve
from .issue_actions import issue_assign, issue_resolve_next_release

# Errors per hour "before" and "after" a release are averaged over at most this long.
RATE_WINDOW = timedelta(hours=24)
RATE_RULE = (
    "Errors per hour in the release's environment: before is the 24 hours before the deploy, after "
    "is from the deploy to the next deploy in that environment, 24 hours or now, whichever comes "
    "first (divided by at least one hour). Each event counts on the side of the deploy its own "
    "time falls on."
)
_MINUTE = timedelta(minutes=1)
# The digest keeps no event time outside these (``processing.digest``), give or take the window.
_EVENTS_EARLIEST = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)
_EVENTS_FUTURE = timedelta(days=1)
RELEASES_PER_PAGE = 50
# Written on the pages where "resolve in the next release" applies.
ORDERING_RULE = (
    "Releases are ordered by deploy order per environment: the order in which they were first "
    "reported for that environment (not by version name or commit date). An issue resolved in the "
    "next release reopens only when an event comes from a release deployed after the one that was "
    "current in its environment when it was resolved; an event from another environment compares "
    "deploy times."
)


# --- Selectors --------------------------------------------------------------------------------------


@dataclass
class ReleaseRow:
    release: Release
    commit_count: int
    authors: list[str]
    new_issues: int
    regressed_issues: int
    rate_before: float | None
    rate_after: float | None

    @property
    def rate_before_text(self) -> str:
        return "—" if self.rate_before is None else figure_format(self.rate_before)

    @property
    def rate_after_text(self) -> str:
        return "—" if self.rate_after is None else figure_format(self.rate_after)


def _minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _minute_ceil(moment: datetime) -> datetime:
    floor = _minute_floor(moment)
    return floor if floor == moment else floor + _MINUTE


def _window_split(start: datetime, deploy: datetime, end: datetime):
    """(whole minutes before, whole minutes after, partial spans before, partial spans after) of
    the windows [start, deploy) and [deploy, end)."""
    before_whole = (_minute_ceil(start), _minute_floor(deploy))
    after_whole = (_minute_ceil(deploy), _minute_floor(end))
    before_parts, after_parts = [], []
    for (low, high), side, parts in (
        (before_whole, (start, deploy), before_parts),
        (after_whole, (deploy, end), after_parts),
    ):
        if low >= high:
            # Shorter than a whole minute: all of it from the events.
            parts.append(side)
            continue
        if side[0] < low:
            parts.append((side[0], low))
        if high < side[1]:
            parts.append((high, side[1]))
    return before_whole, after_whole, before_parts, after_parts


def errors_around(*, app: App, windows: dict[int, tuple[str, datetime, datetime, datetime]]) -> dict[int, tuple[int, int]]:
    """For each key's (environment, start, deploy, end): the events of that environment with a
    timestamp in [start, deploy) and in [deploy, end).

    Two queries for all the windows together: the whole minutes from the per-minute counts
    (``ErrorMinute``), and the partial minutes at the edges (each deploy's own minute, and the
    first and last) from the events themselves, on the (app, environment, timestamp) index. An
    event of a busy issue in an edge minute pruned since (only the newest events of an issue are
    kept) is no longer counted.
    """
    minute_sums, minute_filter, edge_counts, edge_filter = {}, Q(), {}, Q()
    for key, (environment, start, deploy, end) in windows.items():
        deploy = max(min(deploy, end), start)
        before_whole, after_whole, before_parts, after_parts = _window_split(start, deploy, end)
        for side, (low, high) in (("b", before_whole), ("a", after_whole)):
            if low < high:
                span = Q(environment=environment, minute__gte=low, minute__lt=high)
                minute_sums[f"{side}{key}"] = Sum("count", filter=span)
                minute_filter |= span
        for side, parts in (("b", before_parts), ("a", after_parts)):
            spans = Q()
            for low, high in parts:
                if low < high:
                    spans |= Q(timestamp__gte=low, timestamp__lt=high)
            if spans:
                span = Q(spans, environment=environment)
                edge_counts[f"{side}{key}"] = Count("id", filter=span)
                edge_filter |= span
    totals: dict[str, int] = {}
    if minute_sums:
        totals.update(ErrorMinute.objects.filter(minute_filter, app=app).aggregate(**minute_sums))
    if edge_counts:
        for name, n in Event.objects.filter(edge_filter, app=app).aggregate(**edge_counts).items():
            totals[name] = (totals.get(name) or 0) + (n or 0)
    return {key: (totals.get(f"b{key}") or 0, totals.get(f"a{key}") or 0) for key in windows}


def _per_hour(count: int, start: datetime, end: datetime) -> float | None:
    hours = (end - start).total_seconds() / 3600
    if hours <= 0:
        return None
    # Unrounded: the page writes it with three significant digits (one error in a day is 0.0417).
    return count / max(hours, 1.0)


def _rate_window(release: Release, next_deploy: datetime | None, now: datetime) -> tuple[datetime, datetime] | None:
    """The (start, end) around the deploy that its rates count (``RATE_RULE``), or None when the
    deploy time is out of the range any stored event can have."""
    if not _EVENTS_EARLIEST <= release.deployed_at <= now + _EVENTS_FUTURE:
        # No event is stored that far out, and the windows around it would overflow.
        return None
    start = moment_shift(release.deployed_at, -RATE_WINDOW)
    end = min(next_deploy or now, moment_shift(release.deployed_at, RATE_WINDOW), now)
    return start, max(end, release.deployed_at)


def release_error_rates(
    *, app: App, releases: list[Release], next_deploys: dict[int, datetime | None], now: datetime
) -> dict[int, tuple[float | None, float | None]]:
    """Errors per hour before and after each deploy, in the release's environment (``RATE_RULE``),
    by release id: two queries for all of them."""
    spans = {release.pk: _rate_window(release, next_deploys.get(release.pk), now) for release in releases}
    windows = {
        release.pk: (release.environment, spans[release.pk][0], release.deployed_at, spans[release.pk][1])
        for release in releases
        if spans[release.pk] is not None
    }
    counts = errors_around(app=app, windows=windows)
    rates: dict[int, tuple[float | None, float | None]] = {}
    for release in releases:
        if spans[release.pk] is None:
            rates[release.pk] = (None, None)
            continue
        start, end = spans[release.pk]
        before, after = counts[release.pk]
        rates[release.pk] = (_per_hour(before, start, release.deployed_at), _per_hour(after, release.deployed_at, end))
    return rates


def _next_deploys(*, app: App, releases: list[Release]) -> dict[int, datetime | None]:
    """For each release, when the next release of its environment was deployed (one query)."""
    environments = {release.environment for release in releases}
    by_environment: dict[str, list[tuple[int, datetime]]] = {}
    for environment, order, deployed_at in (
        Release.objects.filter(
            app=app,
            environment__in=environments,
        )
        .order_by("environment", "deploy_order")
        .values_list("environment", "deploy_order", "deployed_at")
    ):
        by_environment.setdefault(environment, []).append((order, deployed_at))
    out: dict[int, datetime | None] = {}
    for release in releases:
        later = [deployed_at for order, deployed_at in by_environment.get(release.environment, []) if order > release.deploy_order]
        out[release.pk] = later[0] if later else None
    return out


def _next_release_at(release: Release) -> datetime | None:
    later = Release.objects.filter(
        app_id=release.app_id,
        environment=release.environment,
        deploy_order__gt=release.deploy_order,
    ).order_by("deploy_order")
    return later.values_list("deployed_at", flat=True).first()


def release_rows(*, app: App, limit: int = RELEASES_PER_PAGE, environment: str = "") -> list[ReleaseRow]:
    releases = Release.objects.filter(
        app=app,
    )
    if environment:
        releases = releases.filter(environment=environment)
    releases = list(
        releases.order_by("-deployed_at", "-deploy_order").annotate(commit_count=Count("release_commits"))[:limit]
    )
    ids = [release.pk for release in releases]
    authors: dict[int, list[str]] = {}
    for release_id, name, email in (
        ReleaseCommit.objects.filter(release_id__in=ids)
        .order_by("release_id", "position")
        .values_list("release_id", "commit__author_name", "commit__author_email")
    ):
        label = name or email
        if label and label not in authors.setdefault(release_id, []):
            authors[release_id].append(label)
    new_by_key: dict[tuple[str, str], int] = {}
    for version, environment, n in (
        IssueFollowup.objects.filter(issue__app=app).values("first_release", "first_environment").annotate(n=Count("pk"))
        .values_list("first_release", "first_environment", "n")
    ):  # fmt: skip
        new_by_key[(version, environment)] = n
    regressed = dict(
        IssueFollowup.objects.filter(issue__app=app).exclude(regressed_release="").values("regressed_release")
        .annotate(n=Count("pk")).values_list("regressed_release", "n")
    )  # fmt: skip
    rates = release_error_rates(
        app=app, releases=releases, next_deploys=_next_deploys(app=app, releases=releases), now=timezone.now()
    )
    rows = []
    for release in releases:
        rate_before, rate_after = rates[release.pk]
        rows.append(
            ReleaseRow(
                release=release,
                commit_count=release.commit_count,
                authors=authors.get(release.pk, []),
                new_issues=new_by_key.get((release.version, release.environment), 0),
                regressed_issues=regressed.get(release.version, 0),
                rate_before=rate_before,
                rate_after=rate_after,
            )
        )
    return rows


def release_for_app(*, app: App, release_id: int) -> Release | None:
    return Release.objects.filter(
        app=app,
        pk=release_id,
    ).first()


@dataclass
class EndpointChange:
    name: str
    p95_before: float | None
    p95_after: float | None


@dataclass
class EndpointChanges:
    rows: list[EndpointChange]
    # The environment the figures are of; "" when the transactions carry none (all of them).
    environment: str


def endpoint_p95_changes(*, app: App, release: Release) -> EndpointChanges:
    """Each transaction name's p95 in the day before the release and after it (until the next
    release of its environment or a day), from the performance rollups of the release's
    environment; of all of them when no transaction of the app names that environment."""
    from . import performance

    minute = 60
    if not performance.CUSTOM_EARLIEST <= release.deployed_at <= timezone.now() + performance.CUSTOM_FUTURE:
        # No rollups exist that far out, and the ranges around it would overflow.
        return EndpointChanges(rows=[], environment=release.environment)
    start = release.deployed_at.replace(second=0, microsecond=0)
    end = min(_next_release_at(release) or timezone.now(), start + RATE_WINDOW, timezone.now())
    end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    before_range = performance.TimeRange(key="custom", start=start - RATE_WINDOW, end=start, step=minute)
    after_range = performance.TimeRange(key="custom", start=start, end=end, step=minute)
    environment = release.environment
    if environment and not TransactionRollup.objects.filter(app=app, environment=environment).exists():
        environment = ""
    before, _, _ = performance.names_table(app=app, time_range=before_range, environment=environment)
    after, _, _ = performance.names_table(app=app, time_range=after_range, environment=environment)
    p95_before = {row.name.name: row.stats.p95 for row in before}
    p95_after = {row.name.name: row.stats.p95 for row in after}
    names = sorted(set(p95_before) | set(p95_after))
    return EndpointChanges(
        rows=[EndpointChange(name=name, p95_before=p95_before.get(name), p95_after=p95_after.get(name)) for name in names],
        environment=environment,
    )


def release_markers(*, app: App, start: datetime, end: datetime, environment: str = "") -> list[tuple[datetime, str]]:
    releases = Release.objects.filter(
        app=app,
        deployed_at__gte=start,
        deployed_at__lt=end,
    )
    if environment:
        releases = releases.filter(environment=environment)
    return list(
        releases.order_by("deployed_at")
        .values_list("deployed_at", "version")[:50]
    )


def bar_chart_markers(*, chart: BarChart, markers: list[tuple[datetime, str]]) -> BarChart:
    """Place release markers on a bar chart (x in pixels), for the errors charts."""
    span = (chart.end - chart.start).total_seconds() or 1.0
    chart.markers = [
        (round(chart.width * (moment - chart.start).total_seconds() / span, 2), version, moment) for moment, version in markers
    ]
    return chart


def app_members(*, app: App) -> list[User]:
    return list(
        User.objects.filter(
            memberships__organization_id=app.organization_id,
        ).order_by("email")
    )


# --- Views ------------------------------------------------------------------------------------------


@login_required
def release_list(request: HttpRequest, org_id: str, app_id: str) -> HttpResponse:
    app = app_for_member(request.user, org_id, app_id)
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    environments = environment_filter_resolve(user=request.user, app=app, params=request.GET)
    return render(
        request,
        "dashboards/releases.html",
        {
            "app": app,
            "organization": app.organization,
            "rows": release_rows(app=app, environment=environments.current),
            "ordering_rule": ORDERING_RULE,
            "rate_rule": RATE_RULE,
            "environments": environments,
        },
    )


@login_required
def release_detail(request: HttpRequest, org_id: str, app_id: str, release_id: int) -> HttpResponse:
    app = app_for_member(request.user, org_id, app_id)
    release = release_for_app(app=app, release_id=release_id)
    if release is None:
        raise Http404("No such release")
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    commits = list(
        Commit.objects.filter(release_commits__release=release).order_by("release_commits__position")
    )
    files: dict[int, list[CommitFile]] = {}
    for changed in CommitFile.objects.filter(commit__in=commits).order_by("path"):
        files.setdefault(changed.commit_id, []).append(changed)
    new_issues = Issue.objects.filter(
        app=app,
        followup__first_release=release.version,
        followup__first_environment=release.environment,
    ).order_by("-event_count")[:100]
    regressions = Issue.objects.filter(
        app=app,
        followup__regressed_release=release.version,
    ).order_by("-regressed_at")[:100]
    release.app = app
    rates = release_error_rates(
        app=app, releases=[release], next_deploys={release.pk: _next_release_at(release)}, now=timezone.now()
    )[release.pk]
    return render(
        request,
        "dashboards/release.html",
        {
            "app": app,
            "organization": app.organization,
            "release": release,
            "commits": [(commit, files.get(commit.pk, [])) for commit in commits],
            "new_issues": new_issues,
            "regressions": regressions,
            "endpoints": endpoint_p95_changes(app=app, release=release),
            "rate_before": rates[0],
            "rate_after": rates[1],
            "rate_rule": RATE_RULE,
            "ordering_rule": ORDERING_RULE,
            "is_owner": member_is_owner(user=request.user, app=app),
        },
    )


def member_is_owner(*, user: User, app: App) -> bool:
    return Membership.objects.filter(
        organization_id=app.organization_id,
        user=user,
        role=Membership.Role.OWNER,
    ).exists()


@login_required
def release_delete_view(request: HttpRequest, org_id: str, app_id: str, release_id: int) -> HttpResponse:
    """GET asks (a page with the release and a form), POST deletes; owners only. A plain form,
    not a JavaScript confirm(), so it works without scripts and cannot be skipped by a script."""
    app = app_for_member(request.user, org_id, app_id)
    release = release_for_app(app=app, release_id=release_id)
    if release is None:
        raise Http404("No such release")
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    if not member_is_owner(user=request.user, app=app):
        return HttpResponse("Only owners delete releases.", status=403, content_type="text/plain")
    if request.method == "POST":
        version = release.version
        release_delete(release=release)
        messages.success(request, f"Release {version} was deleted.")
        return redirect("dashboards:release_list", app.organization.public_id, app.public_id)
    return render(
        request,
        "dashboards/release_delete.html",
        {
            "app": app,
            "organization": app.organization,
            "release": release,
            "commit_count": ReleaseCommit.objects.filter(release=release).count(),
        },
    )


@login_required
def issue_assign_view(request: HttpRequest, org_id: str, app_id: str, issue_id: int) -> HttpResponse:
    """POST assignee=<user id> (or empty to unassign): a manual assignment, which wins."""
    app, issue = selectors.app_issue_for_member(request.user, org_id, app_id, issue_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    raw = request.POST.get("assignee", "")
    assignee = None
    if raw:
        assignee = User.objects.filter(pk=selectors.id_parse(raw) or 0, memberships__organization_id=app.organization_id).first()
        if assignee is None:
            return HttpResponse("The assignee must be a member of this organization.", status=400, content_type="text/plain")
    issue_assign(issue=issue, assignee=assignee)
    return redirect("dashboards:issue_detail", app.organization.public_id, app.public_id, issue.id)


@login_required
def issue_resolve_next_view(request: HttpRequest, org_id: str, app_id: str, issue_id: int) -> HttpResponse:
    app, issue = selectors.app_issue_for_member(request.user, org_id, app_id, issue_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    issue_resolve_next_release(issue=issue)
    return redirect("dashboards:issue_detail", app.organization.public_id, app.public_id, issue.id)


def issue_followup_context(*, app: App, issue: Issue) -> dict:
    """What the issue page shows about assignment and releases."""
    followup = IssueFollowup.objects.filter(issue=issue).select_related("suspect_commit", "assignee", "resolved_in_release").first()
    return {
        "followup": followup,
        "members": app_members(app=app),
        "ordering_rule": ORDERING_RULE,
    }


class AlertSettingsForm(forms.ModelForm):
    webhook_url = forms.URLField(
        required=False, max_length=500, assume_scheme="https", label="Webhook URL (Slack-compatible JSON)"
    )

    class Meta:
        model = AppAlertSettings
        fields = [
            "auto_assign", "alert_new", "alert_regression", "alert_spike", "spike_threshold",
            "spike_window_minutes", "issue_window_minutes", "digest_minutes", "webhook_url",
        ]  # fmt: skip
        labels = {
            "auto_assign": "Assign new issues to the author of the suspect commit",
            "alert_new": "Alert on new issues",
            "alert_regression": "Alert on regressions",
            "alert_spike": "Alert on spikes",
            "spike_threshold": "Spike: events in an issue",
            "spike_window_minutes": "Spike: within minutes",
            "issue_window_minutes": "At most one alert per issue per minutes",
            "digest_minutes": "Default for members: new issues within minutes of an email go into one digest (0: at once)",
            "webhook_url": "Webhook URL (Slack-compatible JSON)",
        }

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data["webhook_url"]
        # The worker checks again at every call; this tells the owner now why it would refuse.
        refusal = webhook_target_refusal(url) if url else ""
        if refusal:
            raise forms.ValidationError(f"This URL would not be called: {refusal}.")
        return url


# A member's choice for new issues: "" keeps the app's window, "0" is each alert at once.
DIGEST_CHOICES = ("", "0", "5", "15", "30", "60")


def _digest_choices(policy: AppAlertSettings) -> list[tuple[str, str]]:
    labels = {"": f"The app's default (one email at most every {policy.digest_minutes} minutes)" if policy.digest_minutes
              else "The app's default (each alert at once)", "0": "Each alert at once"}  # fmt: skip
    return [(value, labels.get(value) or f"One email at most every {value} minutes") for value in DIGEST_CHOICES]


@login_required
def alert_settings(request: HttpRequest, org_id: str, app_id: str) -> HttpResponse:
    """The app's alert policy (owners), the member's own subscription, and their email aliases."""
    app = app_for_member(request.user, org_id, app_id)
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    is_owner = member_is_owner(user=request.user, app=app)
    policy = AppAlertSettings.objects.filter(app=app).first() or AppAlertSettings(app=app)
    subscription = AlertSubscription.objects.filter(app=app, user=request.user).first()
    mode = subscription.mode if subscription else AlertSubscription.Mode.ALL
    chosen = subscription.digest_minutes if subscription else None
    digest = "" if chosen is None else str(chosen)
    form = AlertSettingsForm(instance=policy)
    error = ""
    if request.method == "POST":
        section = request.POST.get("section", "")
        if section == "policy":
            if not is_owner:
                return HttpResponse("Only owners change the app's alert settings.", status=403, content_type="text/plain")
            form = AlertSettingsForm(request.POST, instance=policy)
            if form.is_valid():
                form.save()
                return redirect("dashboards:alert_settings", app.organization.public_id, app.public_id)
        elif section == "subscription":
            mode = request.POST.get("mode", "")
            if mode not in AlertSubscription.Mode.values:
                return HttpResponse("Unknown mode.", status=400, content_type="text/plain")
            defaults: dict = {"mode": mode}
            if "digest" in request.POST:
                digest = request.POST["digest"]
                if digest not in DIGEST_CHOICES:
                    return HttpResponse("Unknown digest choice.", status=400, content_type="text/plain")
                defaults["digest_minutes"] = int(digest) if digest else None
            AlertSubscription.objects.update_or_create(app=app, user=request.user, defaults=defaults)
            return redirect("dashboards:alert_settings", app.organization.public_id, app.public_id)
        elif section == "alias":
            try:
                alias = alias_add(user=request.user, email=request.POST.get("email", "")[:300])
            except AliasRefused as refused:
                error = str(refused)
            else:
                messages.success(request, f"We sent a link to {alias.email}: the address is used once you follow it.")
                return redirect("dashboards:alert_settings", app.organization.public_id, app.public_id)
        elif section == "alias-remove":
            EmailAlias.objects.filter(user=request.user, pk=selectors.id_parse(request.POST.get("alias")) or 0).delete()
            return redirect("dashboards:alert_settings", app.organization.public_id, app.public_id)
        else:
            return HttpResponse("Unknown form.", status=400, content_type="text/plain")
    return render(
        request,
        "dashboards/alerts.html",
        {
            "app": app,
            "organization": app.organization,
            "form": form,
            "is_owner": is_owner,
            "mode": mode,
            "modes": AlertSubscription.Mode.choices,
            "digest": digest,
            "digest_choices": _digest_choices(policy),
            "aliases": EmailAlias.objects.filter(user=request.user).order_by("email"),
            "error": error,
        },
        status=400 if error or (request.method == "POST" and form.errors) else 200,
    )
