"""What happens to issues after their events are stored: a new issue gets its first release, its
suspect commit and assignee, and a "new issue" alert; a regressed one a "regression" alert; a
busy one a "spike" alert. Run by ``processing.tasks.issues_followup`` for the issues a digest
batch touched, outside the digest's transaction, so a slow SMTP server never holds up storing.

Each regression alerts once, whatever the per-issue window: it follows a person's resolve (plain
or "in the next release"), so it cannot flood, and it is the news a resolve asks for. Spikes are
cut to one per issue per ``issue_window_minutes`` after the issue's last alert. A new issue is
claimed by creating its ``IssueFollowup`` row (unique), and a regression by stamping the
regression it alerted about, so two workers never alert twice. A manual assignment
(``assigned_manually``) is never changed here.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db import IntegrityError, transaction
from django.db.models import Count, Sum

from .alerts import AlertWhat, issue_alert
from .models import AppAlertSettings, Event, Issue, IssueFollowup, IssueHourly
from .suspects import member_for_email, suspect_find

logger = logging.getLogger(__name__)


def _followup_new(issue: Issue, *, auto_assign: bool) -> IssueFollowup | None:
    """Create the issue's follow-up row with its release, suspect and assignee; None if another
    worker already did."""
    first = Event.objects.filter(issue=issue).order_by("timestamp", "pk").first()
    followup = IssueFollowup(issue=issue)
    if first is not None:
        followup.first_release, followup.first_environment = first.release, first.environment
        if auto_assign:
            data = first.data if isinstance(first.data, dict) else {}
            suspect = suspect_find(app=issue.app, data=data, release=first.release, environment=first.environment)
            if suspect is not None:
                followup.suspect_commit = suspect.commit
                followup.suspect_reason = suspect.reason
                followup.assignee = member_for_email(app=issue.app, email=suspect.commit.author_email)
    try:
        with transaction.atomic():
            followup.save()
    except IntegrityError:
        return None
    return followup


def _events_within(*, issue_windows: dict[int, timedelta], now: datetime) -> dict[int, int]:
    """Events of each issue within its window before ``now``, one query per distinct window.
    Windows of an hour or more read the hourly counts (pruning keeps only the newest events of an
    issue, so counting rows would stop at that cap); shorter ones count event rows on the
    (issue, timestamp) index."""
    by_window: dict[timedelta, list[int]] = {}
    for issue_id, window in issue_windows.items():
        by_window.setdefault(window, []).append(issue_id)
    counts: dict[int, int] = {}
    for window, ids in by_window.items():
        since = now - window
        if window >= timedelta(hours=1):
            start = since.replace(minute=0, second=0, microsecond=0)
            rows = IssueHourly.objects.filter(issue_id__in=ids, hour__gte=start).values("issue_id").annotate(n=Sum("count"))
        else:
            rows = Event.objects.filter(issue_id__in=ids, timestamp__gte=since).values("issue_id").annotate(n=Count("id"))
        counts.update({row["issue_id"]: row["n"] or 0 for row in rows})
    return counts


def issue_followup(
    *, issue: Issue, now: datetime, policy: AppAlertSettings, followup: IssueFollowup | None, recent: int
) -> str:
    """Follow up one issue, given its app's policy, its follow-up row (None for a new issue) and
    its events within the spike window; returns the alert sent ("new", "regression", "spike") or ""."""
    what: AlertWhat | None = None
    if followup is None:
        followup = _followup_new(issue, auto_assign=policy.auto_assign)
        if followup is None:
            return ""
        what = AlertWhat(kind="new") if policy.alert_new else None
    elif issue.is_regressed and issue.regressed_at and (
        followup.regression_alerted_at is None or followup.regression_alerted_at < issue.regressed_at
    ):
        # Stamped with the regression's own time, not ``now``: a later regression has a later
        # ``regressed_at`` and alerts again, this one never twice (the stamp is the claim).
        claimed = IssueFollowup.objects.filter(pk=followup.pk, regression_alerted_at=followup.regression_alerted_at).update(
            regression_alerted_at=issue.regressed_at
        )
        if not claimed:
            return ""
        release = followup.regressed_release
        if not release:
            # Regressed before the digest recorded the release: the newest event's is the best guess.
            release = Event.objects.filter(issue=issue).order_by("-timestamp", "-pk").values_list("release", flat=True).first() or ""
            if release:
                IssueFollowup.objects.filter(pk=followup.pk).update(regressed_release=release)
        if issue.status == Issue.Status.IGNORED or not policy.alert_regression:
            return ""
        IssueFollowup.objects.filter(pk=followup.pk).update(last_alert_at=now)
        issue_alert(issue=issue, followup=followup, what=AlertWhat(kind="regression", release=release), now=now)
        return "regression"
    elif policy.alert_spike and issue.status == Issue.Status.UNRESOLVED:
        window = timedelta(minutes=policy.spike_window_minutes)
        if recent >= policy.spike_threshold and (followup.spike_alerted_at is None or followup.spike_alerted_at < now - window):
            IssueFollowup.objects.filter(pk=followup.pk).update(spike_alerted_at=now)
            what = AlertWhat(
                kind="spike", count=recent, minutes=policy.spike_window_minutes, threshold=policy.spike_threshold
            )
    if what is None or issue.status == Issue.Status.IGNORED:
        return ""
    if followup.last_alert_at is not None and followup.last_alert_at > now - timedelta(minutes=policy.issue_window_minutes):
        return ""
    IssueFollowup.objects.filter(pk=followup.pk).update(last_alert_at=now)
    issue_alert(issue=issue, followup=followup, what=what, now=now)
    return what.kind


def issues_followup(*, issue_ids: list[int], now: datetime | None = None) -> dict[str, int]:
    """Follow up the issues a digest batch touched. Every batch touches many issues and most need
    nothing, so what each decision needs (policies, follow-up rows, spike counts) is read for the
    whole batch at once: a handful of queries per batch, not per issue."""
    now = now or datetime.now(tz=dt_timezone.utc)
    issues = list(Issue.objects.filter(pk__in=issue_ids).select_related("app__organization").order_by("pk"))
    if not issues:
        return {}
    stored = {s.app_id: s for s in AppAlertSettings.objects.filter(app_id__in={issue.app_id for issue in issues})}
    policies = {issue.app_id: stored.get(issue.app_id) or AppAlertSettings(app=issue.app) for issue in issues}
    followups = {
        f.issue_id: f
        for f in IssueFollowup.objects.filter(issue_id__in=[issue.pk for issue in issues]).select_related(
            "suspect_commit", "assignee"
        )
    }
    spike_windows = {
        issue.pk: timedelta(minutes=policies[issue.app_id].spike_window_minutes)
        for issue in issues
        if issue.pk in followups and policies[issue.app_id].alert_spike and issue.status == Issue.Status.UNRESOLVED
    }
    recent = _events_within(issue_windows=spike_windows, now=now)
    sent: dict[str, int] = {}
    for issue in issues:
        kind = issue_followup(
            issue=issue,
            now=now,
            policy=policies[issue.app_id],
            followup=followups.get(issue.pk),
            recent=recent.get(issue.pk, 0),
        )
        if kind:
            sent[kind] = sent.get(kind, 0) + 1
    return sent
