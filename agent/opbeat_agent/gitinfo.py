"""What git says about the checkout an app or the release CLI runs in: the head commit, and the
commits of a range with their files and hunks (``git log -p -U0``).

Used by ``opbeat_agent.config`` (the release an app reports when none is configured) and by
``opbeat_agent.cli`` (``opbeat-agent release``). It only reads the repository, never changes it,
and any git failure means "no answer", never an exception in the host app.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional

GIT_TIMEOUT_SECONDS = 5
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# Record and field separators for git log --format: bytes that never occur in names or messages.
_RS, _FS = "\x1e", "\x1f"
_COMMIT_START = "\x00commit" + _FS


def git_run(args: List[str], *, cwd: Optional[str] = None) -> Optional[str]:
    try:
        completed = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS,
            errors="replace", env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.strip()


@functools.lru_cache(maxsize=8)
def _head_cached(cwd: str) -> str:
    return git_run(["rev-parse", "HEAD"], cwd=cwd) or ""


def git_head(cwd: Optional[str] = None) -> str:
    """The commit checked out in ``cwd`` (the working directory by default), or ""."""
    return _head_cached(os.path.abspath(cwd or os.getcwd()))


@dataclass
class FileChange:
    path: str
    status: str = "modified"
    hunks: List[List[int]] = field(default_factory=list)


@dataclass
class CommitInfo:
    sha: str
    author_name: str
    author_email: str
    timestamp: str
    message: str
    files: List[FileChange] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "sha": self.sha, "author_name": self.author_name, "author_email": self.author_email,
            "timestamp": self.timestamp, "message": self.message,
            "files": [{"path": f.path, "status": f.status, "hunks": f.hunks} for f in self.files],
        }  # fmt: skip


def _path_of(header: str) -> str:
    # "+++ b/orders/views.py" or "--- a/orders/views.py"; git quotes odd names in C style.
    path = header[4:].strip()
    if path.startswith('"') and path.endswith('"'):
        path = path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
    return path[2:] if path[:2] in ("a/", "b/") else path


def commits_parse(lines: Iterator[str], *, on_commit: Callable[[int], None] = lambda n: None) -> List[CommitInfo]:
    """Parse ``git log -p -U0 --format=<our format>`` output, line by line."""
    commits: List[CommitInfo] = []
    current: Optional[CommitInfo] = None
    change: Optional[FileChange] = None
    header: List[str] = []
    in_header = False
    in_diff_header = False
    status = "modified"
    old_path = ""
    header_path = ""

    def flush_header_only() -> None:
        nonlocal header_path
        if header_path and current is not None and in_diff_header:
            current.files.append(FileChange(path=header_path, status=status))
        header_path = ""

    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith(_COMMIT_START):
            flush_header_only()
        if line.startswith(_COMMIT_START) or in_header:
            # The header runs from the start marker to the record separator (the message spans lines).
            header.append(line[len(_COMMIT_START):] if line.startswith(_COMMIT_START) else line)
            in_header = _RS not in line
            if not in_header:
                text = "\n".join(header).split(_RS, 1)[0]
                header = []
                sha, name, email, when, message = (text.split(_FS) + [""] * 5)[:5]
                current = CommitInfo(sha=sha, author_name=name, author_email=email.lower(), timestamp=when, message=message.strip())
                commits.append(current)
                change, in_diff_header, header_path = None, False, ""
                on_commit(len(commits))
            continue
        if current is None:
            continue
        if line.startswith("diff --git "):
            flush_header_only()
            change, status, old_path, in_diff_header = None, "modified", "", True
            # "diff --git a/<path> b/<path>": kept in case no "+++" line follows (an empty new
            # file, a binary file, a mode change), so the file is still listed, without hunks.
            header_path = line[len("diff --git "):].rpartition(" b/")[2]
        elif not in_diff_header:
            # Inside a hunk: "+++ x" here is an added line "++ x", not a file header.
            if line.startswith("@@") and change is not None:
                match = _HUNK.match(line)
                if match:
                    old_start, old_lines, new_start, new_lines = match.groups()
                    change.hunks.append([
                        int(old_start), 1 if old_lines is None else int(old_lines),
                        int(new_start), 1 if new_lines is None else int(new_lines),
                    ])  # fmt: skip
        elif line.startswith("new file mode"):
            status = "added"
        elif line.startswith("deleted file mode"):
            status = "deleted"
        elif line.startswith("rename from "):
            status, old_path = "renamed", line[len("rename from "):]
        elif line.startswith("--- "):
            old_path = old_path or _path_of(line)
        elif line.startswith("+++ "):
            path = _path_of(line)
            if path == "/dev/null":
                path = old_path
            change = FileChange(path=path, status=status)
            current.files.append(change)
            in_diff_header, header_path = False, ""
    flush_header_only()
    return commits


def git_log_args(revision_range: List[str]) -> List[str]:
    fmt = _COMMIT_START.replace("\x00", "%x00").replace(_FS, "%x1f") + "%H%x1f%an%x1f%ae%x1f%aI%x1f%B%x1e"
    return ["log", "-p", "-U0", "--no-color", "--no-ext-diff", "--find-renames", f"--format={fmt}", *revision_range, "--"]
