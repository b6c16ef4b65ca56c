"""A member's writes about an issue beyond its status: resolve "in the next release", and assign
it to someone (a manual assignment wins: the worker never changes it afterwards).

Like ``dashboards.services``, these touch only the status columns of ``Issue`` and the issue's
``IssueFollowup`` row, never events or counts.
"""

from __future__ import annotations

from django.db import transaction

from accounts.models import User
from processing.models import Event, Issue, IssueFollowup, Release

from .services import issue_status_set


@transaction.atomic
def issue_resolve_next_release(*, issue: Issue) -> Issue:
    """Resolve the issue as fixed by the next release: it regresses only on an event of a release
    deployed after the current one (in the environment of its latest event; see
    ``processing.releases.release_is_after``). Without any release this is a plain resolve."""
    latest = Event.objects.filter(issue=issue).order_by("-timestamp", "-pk").values("release", "environment").first()
    environment = latest["environment"] if latest else ""
    current = (
        Release.objects.filter(app_id=issue.app_id, environment=environment).order_by("-deploy_order").first()
    )
    issue_status_set(issue=issue, status=Issue.Status.RESOLVED)
    followup, _ = IssueFollowup.objects.get_or_create(issue=issue)
    followup.resolved_in_release = current
    followup.save(update_fields=["resolved_in_release"])
    issue.followup = followup
    return issue


@transaction.atomic
def issue_assign(*, issue: Issue, assignee: User | None) -> IssueFollowup:
    """Assign (or unassign, with None) by hand; the caller checked ``assignee`` is a member."""
    followup, _ = IssueFollowup.objects.get_or_create(issue=issue)
    followup.assignee = assignee
    followup.assigned_manually = True
    followup.save(update_fields=["assignee", "assigned_manually"])
    return followup


@transaction.atomic
def issues_unassign_member(*, organization_id: int, user_id: int) -> int:
    """Unassign a person who is no longer a member from the organization's issues: an assigned
    issue alerts only its assignee, and alerts go only to members, so it would alert nobody."""
    return IssueFollowup.objects.filter(
        issue__app__organization_id=organization_id,
        assignee_id=user_id,
    ).update(assignee=None)


def on_member_removed(sender, *, organization, user, **kwargs) -> None:
    """Receiver of ``accounts.signals.member_removed`` (connected in ``DashboardsConfig.ready``)."""
    issues_unassign_member(organization_id=organization.pk, user_id=user.pk)


def issue_release_resolution_clear(*, issue: Issue) -> None:
    """A plain resolve, ignore or reopen forgets the release an issue was resolved in."""
    IssueFollowup.objects.filter(issue=issue).update(resolved_in_release=None)


