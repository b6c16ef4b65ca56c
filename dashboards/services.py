"""The dashboard's only write: a member changes an issue's status (resolve, ignore, reopen).

Events and counts belong to the worker (``processing``); this module never touches them, so a
status change cannot race a digest into a wrong count. The worker reopens a resolved issue on its
own when a new event arrives (a regression).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from processing.models import Issue

# The form's action names, mapped to the status they set.
STATUS_ACTIONS = {
    "resolve": Issue.Status.RESOLVED,
    "ignore": Issue.Status.IGNORED,
    "reopen": Issue.Status.UNRESOLVED,
}


@transaction.atomic
def issue_status_set(*, issue: Issue, status: str) -> Issue:
    """Set the status; resolving stamps resolved_at (the worker compares new events against it)
    and clears the regression flag, reopening clears both. A single UPDATE of these columns only,
    so the worker's counters, written concurrently, are never overwritten with stale values."""
    if status not in Issue.Status.values:
        raise ValueError(f"unknown issue status {status!r}")
    fields: dict = {"status": status}
    if status == Issue.Status.RESOLVED:
        fields.update(resolved_at=timezone.now(), is_regressed=False)
    elif status == Issue.Status.UNRESOLVED:
        fields.update(resolved_at=None, is_regressed=False)
    Issue.objects.filter(pk=issue.pk, app_id=issue.app_id).update(**fields)
    for name, value in fields.items():
        setattr(issue, name, value)
    return issue
