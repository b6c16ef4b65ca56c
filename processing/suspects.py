"""The suspect commit of a new issue, and the member it is assigned to.

For the in-app frames of the issue's first event, from the crash end outwards: the newest commit
(in the event's release or an earlier one) whose hunks cover the frame's line, the line being
mapped back through the hunks of the newer commits to the same file (``line_map_back``). When no
hunk covers any frame's line, the newest commit that touched the file of the first frame that has
one. The author is matched to an organization member by verified email or verified alias.

Pure functions (``hunk_covers``, ``line_map_back``, ``path_matches``) carry the logic; the rest
reads the database. This module never writes: ``processing.followup`` stores what it finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from django.db.models import Q

from accounts.models import App, Membership, User

from .models import Commit, CommitFile, EmailAlias, Release, ReleaseCommit

# Frames examined per event: the crash end is where the cause usually is.
MAX_FRAMES = 30


@dataclass(frozen=True)
class FrameRef:
    path: str  # as the agent reported it: filename (relative) or abs_path
    lineno: int
    function: str


@dataclass(frozen=True)
class Suspect:
    commit: Commit
    frame: FrameRef
    by_line: bool  # False: the file-level fallback

    @property
    def reason(self) -> str:
        where = f"frame `{self.frame.path}:{self.frame.lineno}` in `{self.frame.function or '?'}`"
        summary = (self.commit.message.splitlines() or [""])[0][:120]
        if self.by_line:
            return f"{where}, changed by {self.commit.sha[:7]} '{summary}'"
        return f"{where}: no commit changed that line; the newest change to its file is {self.commit.sha[:7]} '{summary}'"


# --- Pure logic ---------------------------------------------------------------------------------


def hunk_covers(hunk: list[int], line: int) -> bool:
    """True when the hunk's new lines include ``line`` (a pure deletion covers nothing)."""
    _old_start, _old_lines, new_start, new_lines = hunk
    return new_lines > 0 and new_start <= line < new_start + new_lines


def line_map_back(hunks: Iterable[list[int]], line: int) -> int:
    """Where ``line`` (after a commit) was before it: shifted by every hunk above it.

    A hunk ``[old_start, old_lines, new_start, new_lines]`` above the line moved it by
    ``new_lines - old_lines``; a pure deletion (``new_lines == 0``) sits after ``new_start``."""
    shift = 0
    for _old_start, old_lines, new_start, new_lines in hunks:
        above = new_start + new_lines <= line if new_lines > 0 else new_start < line
        if above:
            shift += new_lines - old_lines
    return line - shift


def path_matches(frame_path: str, repo_path: str) -> bool:
    """A frame's file (absolute, or relative to some root) is a repository path when one ends with
    the other on a path boundary."""
    frame_path = frame_path.replace("\\", "/")
    if frame_path.startswith("./"):
        frame_path = frame_path[2:]
    if frame_path == repo_path:
        return True
    return frame_path.endswith("/" + repo_path) or repo_path.endswith("/" + frame_path)


def event_frames(data: dict) -> list[FrameRef]:
    """In-app frames of an event, crash end first."""
    frames: list[Any] = []
    stacktrace = data.get("stacktrace")
    if isinstance(stacktrace, dict) and isinstance(stacktrace.get("frames"), list):
        frames = stacktrace["frames"]
    exception = data.get("exception")
    if not frames and isinstance(exception, dict) and isinstance(exception.get("stacktrace"), dict):
        frames = exception["stacktrace"].get("frames") or []
    refs: list[FrameRef] = []
    for frame in reversed(frames):
        if not isinstance(frame, dict):
            continue
        if frame.get("in_app") is False or frame.get("library_frame") is True:
            continue
        path = frame.get("filename") or frame.get("abs_path") or ""
        lineno = frame.get("lineno")
        if not isinstance(path, str) or not path or isinstance(lineno, bool) or not isinstance(lineno, int):
            continue
        refs.append(FrameRef(path=path, lineno=lineno, function=str(frame.get("function") or "")))
        if len(refs) >= MAX_FRAMES:
            break
    return refs


def file_suspect(changes: list[tuple[Commit, list[list[int]]]], line: int) -> Commit | None:
    """``changes``: the commits touching one file, newest first, with their hunks of it. The
    commit whose hunk covers ``line`` (as of the newest state), mapped back through newer ones."""
    for commit, hunks in changes:
        if any(hunk_covers(hunk, line) for hunk in hunks):
            return commit
        line = line_map_back(hunks, line)
        if line <= 0:
            return None
    return None


# --- Reads --------------------------------------------------------------------------------------


def _eligible_commit_ids(*, app: App, release: str, environment: str) -> list[int] | None:
    """Ids of the commits in the event's release and the releases deployed before it in its
    environment; None (every commit of the app) when the release is unknown."""
    current = Release.objects.filter(app=app, environment=environment, version=release).first() if release else None
    if current is None:
        return None
    return list(
        ReleaseCommit.objects.filter(
            release__app=app,
            release__environment=environment,
            release__deploy_order__lte=current.deploy_order,
        ).values_list("commit_id", flat=True)
    )


def suspect_find(*, app: App, data: dict, release: str = "", environment: str = "") -> Suspect | None:
    frames = event_frames(data)
    if not frames:
        return None
    eligible = _eligible_commit_ids(app=app, release=release, environment=environment)
    names = {frame.path.replace("\\", "/").rsplit("/", 1)[-1] for frame in frames}
    files = CommitFile.objects.filter(app=app).filter(
        Q.create([("path__endswith", name) for name in names], connector=Q.OR)
    )
    if eligible is not None:
        files = files.filter(commit_id__in=eligible)
    rows = list(files.select_related("commit"))
    # Newest first: by commit time; on a tie, the later release, then the order git listed them in
    # (position 0 is a release's newest commit).
    order: dict[int, tuple[int, int]] = {}
    for commit_id, deploy_order, position in ReleaseCommit.objects.filter(
        commit_id__in={row.commit_id for row in rows}
    ).values_list("commit_id", "release__deploy_order", "position"):
        order[commit_id] = max(order.get(commit_id, (0, -(10**9))), (deploy_order, -position))
    rows.sort(key=lambda row: (row.commit.timestamp, *order.get(row.commit_id, (0, 0)), row.commit_id), reverse=True)

    per_frame: list[tuple[FrameRef, list[tuple[Commit, list[list[int]]]]]] = []
    for frame in frames:
        changes = [(row.commit, row.hunks or []) for row in rows if path_matches(frame.path, row.path)]
        per_frame.append((frame, changes))
        commit = file_suspect(changes, frame.lineno)
        if commit is not None:
            return Suspect(commit=commit, frame=frame, by_line=True)
    for frame, changes in per_frame:
        if changes:
            return Suspect(commit=changes[0][0], frame=frame, by_line=False)
    return None


def member_for_email(*, app: App, email: str) -> User | None:
    """The member of the app's organization who commits as ``email``: their verified address or a
    verified alias. Unverified addresses match nobody, or anyone invited to the organization could
    claim a colleague's commits by typing their address."""
    email = (email or "").strip().lower()
    if not email:
        return None
    members = Membership.objects.filter(organization_id=app.organization_id).values("user_id")
    user = User.objects.filter(
        pk__in=members,
        email__iexact=email,
        email_verified_at__isnull=False,
    ).first()
    if user is not None:
        return user
    alias = (
        EmailAlias.objects.filter(
            email=email,
            user__in=members,
            verified_at__isnull=False,
        )
        .select_related("user")
        .first()
    )
    return alias.user if alias else None
