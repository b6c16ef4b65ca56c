"""Storing releases and their commits, and the release-aware half of regression detection.

``release_store`` takes the dict ``intake.protocols.releases.release_parse`` made (carried in a
queue envelope) and writes the release, its commits, their files and hunks. It is idempotent:
a release is keyed by (app, environment, version) and keeps the ``deploy_order`` it got the first
time; commits are keyed by (app, sha); re-sending adds nothing.

Ordering rule ("after the release it was resolved in"): releases of an app are ordered per
environment by the order in which they were first posted (``deploy_order``), not by version
strings or commit dates, because that is the order they reached the users.

This module never reads a request and never trusts an envelope.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

from django.db import transaction
from django.db.models import Max

from accounts.models import App

from .models import Commit, CommitFile, Environment, Issue, IssueFollowup, Release, ReleaseCommit

logger = logging.getLogger(__name__)


# The intake refuses times outside these (``intake.protocols.moments``); a message queued before
# it did, or written by hand, gets the default instead of a time that breaks date arithmetic.
_EARLIEST = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)
_COMMIT_EARLIEST = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_FUTURE_TOLERANCE = timedelta(days=1)


def _when(value: Any, default: datetime, *, earliest: datetime = _EARLIEST) -> datetime:
    """An ISO time from the envelope in UTC, or ``default`` when it is missing, malformed or out
    of [``earliest``, ``default`` + a day] (``default`` is the receive or deploy time)."""
    if not isinstance(value, str) or not value:
        return default
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed.astimezone(dt_timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)
    except (ValueError, OverflowError):
        return default
    return parsed if earliest <= parsed <= default + _FUTURE_TOLERANCE else default


def envelope_release_store(*, envelope: Any) -> Release | None:
    """Store the release of one queue envelope (``intake.releases``); None if it cannot be read."""
    try:
        app_id, data, received = envelope["app_id"], envelope["data"], envelope["received_at"]
        if envelope.get("kind") != "release" or not isinstance(app_id, int) or not isinstance(data, dict):
            raise ValueError("not a release envelope")
        if not isinstance(received, (int, float)) or not math.isfinite(received):
            raise ValueError("received_at is not a number")
        version = str(data["version"])[:200]
        received_at = datetime.fromtimestamp(received, tz=dt_timezone.utc)
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        logger.warning("release_store: skipped a malformed envelope: %s", exc)
        return None
    app = App.objects.filter(pk=app_id).first()
    if app is None:
        logger.warning("release_store: app %s no longer exists; release %r skipped", app_id, version)
        return None
    commits = [commit for commit in data.get("commits") or [] if isinstance(commit, dict) and commit.get("sha")]
    return release_store(
        app=app,
        version=version,
        environment=str(data.get("environment") or "")[:100],
        branch=str(data.get("branch") or "")[:200],
        status=str(data.get("status") or "")[:40],
        deployed_at=_when(data.get("deployed_at"), received_at),
        commits=commits,
    )


@transaction.atomic
def release_store(
    *,
    app: App,
    version: str,
    environment: str = "",
    branch: str = "",
    status: str = "",
    deployed_at: datetime,
    commits: list[dict],
) -> Release:
    """Create or complete the release; ``commits`` newest first, as ``release_parse`` returns them."""
    release = Release.objects.select_for_update().filter(app=app, environment=environment, version=version).first()
    if release is None:
        # Lock the app's row so two workers numbering releases of one environment take turns;
        # the one that waited finds the release the other created (the same re-sent release).
        App.objects.select_for_update().filter(pk=app.pk).first()
        release = Release.objects.filter(app=app, environment=environment, version=version).first()
    if release is None:
        last = Release.objects.filter(app=app, environment=environment).aggregate(top=Max("deploy_order"))["top"] or 0
        release = Release.objects.create(
            app=app, version=version, environment=environment, branch=branch, status=status,
            deployed_at=deployed_at, deploy_order=last + 1,
        )  # fmt: skip
        if environment:
            # The pages' environment selector lists it from now on.
            Environment.objects.bulk_create(
                [Environment(app=app, name=environment, first_seen=deployed_at)], ignore_conflicts=True
            )
    else:
        changed = False
        for name, value in (("branch", branch), ("status", status)):
            if value and getattr(release, name) != value:
                setattr(release, name, value)
                changed = True
        if changed:
            release.save(update_fields=["branch", "status"])

    existing = {sha: pk for sha, pk in Commit.objects.filter(app=app, sha__in=[c["sha"] for c in commits]).values_list("sha", "pk")}
    new_commits = [
        Commit(
            app=app,
            sha=c["sha"],
            author_name=c.get("author_name", ""),
            author_email=(c.get("author_email") or "").lower(),
            message=c.get("message", ""),
            timestamp=_when(c.get("timestamp"), deployed_at, earliest=_COMMIT_EARLIEST),
        )
        for c in commits
        if c["sha"] not in existing
    ]
    Commit.objects.bulk_create(new_commits, ignore_conflicts=True)
    ids = {sha: pk for sha, pk in Commit.objects.filter(app=app, sha__in=[c["sha"] for c in commits]).values_list("sha", "pk")}
    fresh = {commit.sha for commit in new_commits}
    CommitFile.objects.bulk_create(
        [
            CommitFile(app=app, commit_id=ids[c["sha"]], path=f["path"], status=f.get("status", "modified"), hunks=f.get("hunks", []))
            for c in commits
            if c["sha"] in fresh
            for f in c.get("files") or []
        ],
        ignore_conflicts=True,
    )
    ReleaseCommit.objects.bulk_create(
        [ReleaseCommit(release=release, commit_id=ids[c["sha"]], position=i) for i, c in enumerate(commits)],
        ignore_conflicts=True,
    )
    return release


@transaction.atomic
def release_delete(*, release: Release) -> None:
    """Remove a release (one reported by mistake, or with a wrong time). Its commits stay: they
    are the app's, and another release may list them; issues to be resolved "in the next
    release" after it fall back to a plain resolve (``resolved_in_release`` is set to null)."""
    release.delete()


def release_for(*, app_id: int, version: str, environment: str) -> Release | None:
    if not version:
        return None
    return Release.objects.filter(app_id=app_id, environment=environment, version=version).first()


def release_is_after(*, release: Release | None, resolved_in: Release) -> bool:
    """True when ``release`` was deployed after ``resolved_in``: by deploy order in the same
    environment, else (another environment) by deploy time. An unknown release is not after."""
    if release is None:
        return False
    if release.environment == resolved_in.environment:
        return release.deploy_order > resolved_in.deploy_order
    return release.deployed_at > resolved_in.deployed_at


def issues_regress_next_release(*, events: dict[int, list[tuple[str, str]]], now: datetime) -> list[int]:
    """For issues resolved "in the next release" that got events (issue id -> [(release,
    environment)]), reopen as regressed those with an event of a later release. Called by the
    digest inside its transaction; returns the reopened issue ids."""
    followups = IssueFollowup.objects.filter(
        issue_id__in=events, resolved_in_release__isnull=False, issue__status=Issue.Status.RESOLVED
    ).select_related("resolved_in_release")
    reopened: list[int] = []
    for followup in followups:
        resolved_in = followup.resolved_in_release
        for version, environment in events[followup.issue_id]:
            release = release_for(app_id=resolved_in.app_id, version=version, environment=environment)
            if release_is_after(release=release, resolved_in=resolved_in):
                Issue.objects.filter(pk=followup.issue_id, status=Issue.Status.RESOLVED).update(
                    status=Issue.Status.UNRESOLVED, is_regressed=True, regressed_at=now
                )
                IssueFollowup.objects.filter(pk=followup.pk).update(resolved_in_release=None, regressed_release=version)
                reopened.append(followup.issue_id)
                break
    return reopened


def issues_regressed_release_record(*, releases: dict[int, str]) -> None:
    """Record the release each reopened issue happened again in (issue id -> version, "" when
    its event named none), replacing the one of an earlier regression."""
    by_version: dict[str, list[int]] = {}
    for issue_id, version in releases.items():
        by_version.setdefault(version, []).append(issue_id)
    for version, ids in sorted(by_version.items()):
        IssueFollowup.objects.filter(issue_id__in=sorted(ids)).update(regressed_release=version)


def latest_release(*, app: App, environment: str | None = None) -> Release | None:
    releases = Release.objects.filter(app=app)
    if environment is not None:
        releases = releases.filter(environment=environment)
    return releases.order_by("-deployed_at", "-deploy_order").first()
