"""``opbeat-agent release``: tell the server about a deploy, with the commits it brought.

Run it in the deployed git checkout (typically from CI, after the deploy). It asks the server for
the previous release's head commit in this environment, collects the commits since then with
their files and hunks from ``git log -p -U0``, prints what it sends, and posts it to
``/api/v1/organizations/<org>/apps/<app>/releases/``. Credentials come from the same ``OPBEAT_*``
variables as the agent (``OPBEAT_ORGANIZATION_ID``, ``OPBEAT_APP_ID``, ``OPBEAT_SECRET_TOKEN``,
``OPBEAT_SERVERS``) or from options.

It reads the repository and never changes it. Standard library only, like the agent's core.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import List, Optional, TextIO

from .config import config_build
from .gitinfo import CommitInfo, commits_parse, git_log_args, git_run
from .version import __version__

# Without a previous release, the history sent is capped: a first release of a ten-year-old
# repository does not need every commit to find who touched a line recently.
DEFAULT_FIRST_RELEASE_COMMITS = 200
PROGRESS_EVERY = 100
HTTP_TIMEOUT_SECONDS = 30


class ReleaseError(Exception):
    pass


def _request(url: str, *, token: str, data: Optional[bytes] = None, headers: Optional[dict] = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("User-Agent", f"opbeat-agent/{__version__} release")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise ReleaseError(f"could not reach {url}: {exc}") from None
    try:
        return status, json.loads(body or b"{}")
    except ValueError:
        return status, {"error": body[:200].decode("utf-8", "replace")}


def previous_release_head(*, base: str, token: str, environment: str) -> str:
    status, payload = _request(f"{base}latest/?{urllib.parse.urlencode({'environment': environment})}", token=token)
    if status != 200:
        raise ReleaseError(f"the server answered {status} to the previous-release lookup: {payload.get('error', payload)}")
    release = payload.get("release") or {}
    return str(release.get("head_commit") or "")


def commits_collect(*, cwd: Optional[str], since: str, max_commits: int, out: TextIO) -> List[CommitInfo]:
    """The commits from ``since`` (exclusive) to HEAD, newest first; without a usable ``since``,
    the newest ``max_commits``. Progress goes to ``out`` for large histories."""
    if since and git_run(["cat-file", "-e", f"{since}^{{commit}}"], cwd=cwd) is not None:
        revisions = [f"{since}..HEAD"]
    else:
        if since:
            out.write(f"previous release {since[:12]} is not in this repository; sending the newest {max_commits} commits\n")
        revisions = [f"--max-count={max_commits}", "HEAD"]
    total = int(git_run(["rev-list", "--count", *revisions], cwd=cwd) or 0)

    def progress(count: int) -> None:
        if total >= PROGRESS_EVERY and (count % PROGRESS_EVERY == 0 or count == total):
            out.write(f"  collected {count}/{total} commits\n")
            out.flush()

    process = subprocess.Popen(
        ["git", *git_log_args(revisions)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, errors="replace",
    )  # fmt: skip
    assert process.stdout is not None
    commits = commits_parse(iter(process.stdout), on_commit=progress)
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise ReleaseError(f"git log failed: {stderr.strip()}")
    return commits


def release_body_build(*, version: str, environment: str, branch: str, commits: List[CommitInfo]) -> dict:
    return {
        "version": version,
        "environment": environment,
        "branch": branch,
        "status": "completed",
        "deployed_at": datetime.now(tz=timezone.utc).isoformat(),
        "commits": [commit.as_dict() for commit in commits],
    }


def release_summary(body: dict) -> str:
    lines = [
        f"release {body['version']} ({body['environment'] or 'no environment'}, branch {body['branch'] or '?'}): "
        f"{len(body['commits'])} commits"
    ]
    for commit in body["commits"]:
        subject = (commit["message"].splitlines() or [""])[0][:72]
        lines.append(f"  {commit['sha'][:7]} {commit['author_name']} <{commit['author_email']}> {subject} ({len(commit['files'])} files)")
    return "\n".join(lines)


def release_command(args: argparse.Namespace, out: TextIO) -> int:
    options = {
        name: value
        for name, value in (
            ("organization_id", args.organization_id), ("app_id", args.app_id),
            ("secret_token", args.secret_token), ("environment", args.environment),
        )  # fmt: skip
        if value
    }
    if args.server:
        options["servers"] = [args.server]
    config = config_build(kwargs=options)
    problems = [error for error in config.errors if not error.startswith("release")]
    if problems and not args.dry_run:
        out.write("opbeat-agent release: " + "; ".join(problems) + "\n")
        return 2
    cwd = args.repo
    head = git_run(["rev-parse", "HEAD"], cwd=cwd)
    if not head:
        out.write("opbeat-agent release: not a git checkout (git rev-parse HEAD failed)\n")
        return 2
    version = args.version or head
    branch = args.branch or git_run(["rev-parse", "--abbrev-ref", "HEAD"], cwd=cwd) or ""
    environment = config.environment
    base = f"{config.servers[0].rstrip('/')}/api/v1/organizations/{config.organization_id}/apps/{config.app_id}/releases/"
    try:
        since = args.since
        if since is None and not problems:
            since = previous_release_head(base=base, token=config.secret_token, environment=environment)
            out.write(f"previous release: {since[:12] if since else 'none'}\n")
        commits = commits_collect(cwd=cwd, since=since or "", max_commits=args.max_commits, out=out)
        body = release_body_build(version=version, environment=environment, branch=branch, commits=commits)
        out.write(release_summary(body) + "\n")
        if args.dry_run:
            out.write("dry run: nothing sent. The body would be:\n")
            out.write(json.dumps(body, indent=2) + "\n")
            return 0
        data = gzip.compress(json.dumps(body).encode())
        status, payload = _request(
            base, token=config.secret_token, data=data,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )  # fmt: skip
    except ReleaseError as exc:
        out.write(f"opbeat-agent release: {exc}\n")
        return 1
    if status != 202:
        out.write(f"opbeat-agent release: the server answered {status}: {payload.get('error', payload)}\n")
        return 1
    out.write(f"sent release {version[:12]} with {len(commits)} commits: {payload.get('location', '')}\n")
    return 0


def parser_build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opbeat-agent", description="Opbeat agent tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    release = commands.add_parser("release", help="post a release with its commits (run in the deployed git checkout)")
    release.add_argument("--server", help="the server's URL (default: OPBEAT_SERVERS)")
    release.add_argument("--organization-id", help="default: OPBEAT_ORGANIZATION_ID")
    release.add_argument("--app-id", help="default: OPBEAT_APP_ID")
    release.add_argument("--secret-token", help="default: OPBEAT_SECRET_TOKEN")
    release.add_argument("--environment", help="default: OPBEAT_ENVIRONMENT")
    release.add_argument("--version", help="the release's name (default: the head commit's sha)")
    release.add_argument("--branch", help="default: the checked-out branch")
    release.add_argument("--since", help="collect commits after this one instead of asking the server")
    release.add_argument("--repo", help="the git checkout (default: the working directory)")
    release.add_argument("--max-commits", type=int, default=DEFAULT_FIRST_RELEASE_COMMITS,
                         help="commits sent when there is no previous release (default %(default)s)")
    release.add_argument("--dry-run", action="store_true", help="print the body instead of sending it")
    return parser


def main(argv: Optional[List[str]] = None, out: TextIO = sys.stdout) -> int:
    args = parser_build().parse_args(argv)
    if args.command == "release":
        return release_command(args, out)
    return 2


if __name__ == "__main__":
    sys.exit(main())
