"""The releases body: bytes and headers in, one validated release dict out.

Two shapes are accepted on ``POST .../releases/``:

- the original Opbeat release tracker's: ``rev``, ``branch``, ``status`` (and ``machine`` for
  "machine-completed"), form-encoded as ``curl -d`` sent it, or as JSON, or as zlib-deflated JSON;
- ours, sent by ``opbeat-agent release``: ``version``, ``environment``, ``deployed_at`` and
  ``commits: [{sha, author_name, author_email, message, timestamp, files: [{path, status,
  hunks: [[old_start, old_lines, new_start, new_lines], ...]}]}]``.

Both become the same dict (``release_parse``); ``version`` falls back to ``rev``. Every list and
string is capped, and a body over the caps is refused with a message naming the limit.

This module is pure: it must never import Django, read settings, touch the database or the queue.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import parse_qs

import msgspec

from .moments import COMMIT_EARLIEST, moment_check
from .opbeat import ProtocolError, body_decompress

MAX_COMMITS = 5_000
MAX_FILES_PER_COMMIT = 2_000
MAX_HUNKS_PER_FILE = 2_000
MAX_VERSION_CHARS = 200
MAX_ENVIRONMENT_CHARS = 100
MAX_PATH_CHARS = 500
MAX_MESSAGE_CHARS = 10_000
_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")
_FILE_STATUSES = {"added", "modified", "deleted", "renamed", "copied"}


class FileIn(msgspec.Struct, forbid_unknown_fields=False):
    path: str
    status: str = "modified"
    hunks: list[tuple[int, int, int, int]] = []


class CommitIn(msgspec.Struct, forbid_unknown_fields=False):
    sha: str
    author_name: str = ""
    author_email: str = ""
    message: str = ""
    timestamp: datetime | None = None
    files: list[FileIn] = []


class ReleaseIn(msgspec.Struct, forbid_unknown_fields=False):
    version: str | None = None
    rev: str | None = None
    branch: str | None = None
    status: str | None = None
    machine: str | None = None
    environment: str | None = None
    deployed_at: datetime | None = None
    commits: list[CommitIn] = []


def _clean(text: str | None, limit: int) -> str:
    return (text or "").replace("\x00", "").strip()[:limit]


def _form_parse(raw: bytes) -> dict:
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(400, f"form body could not be read: {exc}") from None
    return {key: values[-1] for key, values in fields.items()}


def release_parse(*, body: bytes, content_type: str = "", content_encoding: str = "", max_bytes: int, now: datetime) -> dict:
    """Decompress, parse and validate one releases body; return::

        {"version", "environment", "branch", "status", "deployed_at" (ISO, UTC),
         "commits": [{"sha", "author_name", "author_email", "message", "timestamp" (ISO or None),
                      "files": [{"path", "status", "hunks": [[4 ints], ...]}]}]}

    Times are bounded by ``moments.moment_check`` around ``now``. Raises ``ProtocolError``."""
    if not body:
        raise ProtocolError(400, "empty body; send at least `rev` (or `version`)")
    raw = body_decompress(body=body, content_encoding=content_encoding, max_bytes=max_bytes)
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded" and not raw.lstrip().startswith(b"{"):
        data: object = _form_parse(raw)
    else:
        try:
            data = msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise ProtocolError(400, f"body is not valid JSON or form data: {exc}") from None
        except RecursionError:
            raise ProtocolError(400, "JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError(400, f"body must be a JSON object, not {type(data).__name__}")
    try:
        release = msgspec.convert(data, ReleaseIn, str_keys=True)
    except msgspec.ValidationError as exc:
        raise ProtocolError(400, f"invalid release: {exc}") from None

    version = _clean(release.version or release.rev, MAX_VERSION_CHARS)
    if not version:
        raise ProtocolError(400, "a release needs `version` (or the original tracker's `rev`)")
    if len(release.commits) > MAX_COMMITS:
        raise ProtocolError(413, f"{len(release.commits)} commits is over the limit of {MAX_COMMITS} per release")
    deployed_at = now if release.deployed_at is None else moment_check(release.deployed_at, field="deployed_at", now=now)
    commits = []
    seen: set[str] = set()
    for index, commit in enumerate(release.commits):
        if not _SHA.match(commit.sha):
            raise ProtocolError(400, f"invalid release: `$.commits[{index}].sha` is not a hexadecimal commit id")
        sha = commit.sha.lower()
        if sha in seen:
            continue
        seen.add(sha)
        if len(commit.files) > MAX_FILES_PER_COMMIT:
            raise ProtocolError(413, f"commit {sha[:12]} lists {len(commit.files)} files, over the limit of {MAX_FILES_PER_COMMIT}")
        files = []
        paths: set[str] = set()
        for file_index, changed in enumerate(commit.files):
            path = _clean(changed.path, MAX_PATH_CHARS)
            if not path:
                raise ProtocolError(400, f"invalid release: `$.commits[{index}].files[{file_index}].path` is empty")
            if path in paths:
                continue
            paths.add(path)
            if len(changed.hunks) > MAX_HUNKS_PER_FILE:
                raise ProtocolError(413, f"{path} in commit {sha[:12]} has over {MAX_HUNKS_PER_FILE} hunks")
            for hunk in changed.hunks:
                if min(hunk) < 0 or max(hunk) > 10_000_000:
                    raise ProtocolError(400, f"invalid release: a hunk of {path} in {sha[:12]} has an out-of-range number")
            status = changed.status.strip().lower()
            files.append(
                {
                    "path": path,
                    "status": status if status in _FILE_STATUSES else "modified",
                    "hunks": [list(hunk) for hunk in changed.hunks],
                }
            )
        timestamp = commit.timestamp
        if timestamp is not None:
            timestamp = moment_check(timestamp, field=f"commits[{index}].timestamp", now=now, earliest=COMMIT_EARLIEST)
        commits.append(
            {
                "sha": sha,
                "author_name": _clean(commit.author_name, 200),
                "author_email": _clean(commit.author_email, 254).lower(),
                "message": _clean(commit.message, MAX_MESSAGE_CHARS),
                "timestamp": timestamp.astimezone(timezone.utc).isoformat() if timestamp else None,
                "files": files,
            }
        )
    return {
        "version": version,
        "environment": _clean(release.environment, MAX_ENVIRONMENT_CHARS),
        "branch": _clean(release.branch, 200),
        "status": _clean(release.status, 40),
        "machine": _clean(release.machine, 200),
        "deployed_at": deployed_at.astimezone(timezone.utc).isoformat(),
        "commits": commits,
    }
