"""``opbeat-agent release`` and the git reading under it, on real repositories made by the tests
(the posting itself is exercised against the real server in tests/e2e/test_releases_assignment.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from opbeat_agent.cli import main
from opbeat_agent.gitinfo import commits_parse, git_head, git_log_args

pytestmark = pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0, reason="git missing")


def _git(repo: Path, *args: str, author: str = "al@example.com") -> str:
    name = author.split("@")[0].title()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(repo.parent), GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=author, GIT_COMMITTER_NAME=name,
               GIT_COMMITTER_EMAIL=author, GIT_CONFIG_NOSYSTEM="1")  # fmt: skip
    out = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    return path


def _commit(repo: Path, message: str, files: dict[str, str | None], author: str = "al@example.com") -> str:
    for name, text in files.items():
        if text is None:
            _git(repo, "rm", "-q", name)
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)
            _git(repo, "add", name)
    _git(repo, "commit", "-q", "-m", message, author=author)
    return _git(repo, "rev-parse", "HEAD")


def _parse(repo: Path, *revisions: str):
    out = subprocess.run(["git", *git_log_args(list(revisions or ["HEAD"]))], cwd=repo, capture_output=True, text=True, check=True)
    return commits_parse(iter(out.stdout.splitlines(keepends=True)))


def test_hunks_statuses_and_tricky_lines_are_read_from_git(repo):
    lines = [f"line {n}" for n in range(1, 11)]
    _commit(repo, "First\n\nwith a body", {"a.py": "\n".join(lines) + "\n", "old.py": "x\n", "empty.py": ""})
    changed = lines[:]
    changed[4] = "++ this added line starts with two plus signs"  # "+++ ..." in the patch, not a header
    changed.insert(0, "-- header lookalike")
    second = _commit(
        repo, "Second", {"a.py": "\n".join(changed) + "\n", "old.py": None, "dir/new file.py": "y\n"}, author="Bea@Example.com"
    )
    newest, oldest = _parse(repo)
    assert newest.sha == second and newest.author_email == "bea@example.com" and newest.message == "Second"
    assert oldest.message == "First\n\nwith a body"
    files = {f.path: f for f in newest.files}
    assert files["a.py"].status == "modified"
    assert files["a.py"].hunks == [[0, 0, 1, 1], [5, 1, 6, 1]]
    assert files["old.py"].status == "deleted" and files["old.py"].hunks == [[1, 1, 0, 0]]
    assert files["dir/new file.py"].status == "added"
    assert {f.path: f.status for f in oldest.files} == {"a.py": "added", "empty.py": "added", "old.py": "added"}


def test_dry_run_prints_what_it_would_send_since_a_given_commit(repo, monkeypatch):
    first = _commit(repo, "One", {"a.py": "1\n"})
    second = _commit(repo, "Two", {"a.py": "1\n2\n"}, author="bea@example.com")
    monkeypatch.chdir(repo)
    out = io.StringIO()
    code = main(["release", "--dry-run", "--since", first, "--environment", "staging", "--version", "v2"], out=out)
    assert code == 0
    text = out.getvalue()
    assert f"release v2 (staging, branch main): 1 commits\n  {second[:7]} Bea <bea@example.com> Two (1 files)" in text
    body = json.loads(text.split("The body would be:\n", 1)[1])
    assert [c["sha"] for c in body["commits"]] == [second]
    assert body["commits"][0]["files"] == [{"path": "a.py", "status": "modified", "hunks": [[1, 0, 2, 1]]}]


def test_progress_is_shown_for_large_histories(repo, monkeypatch):
    for number in range(120):
        (repo / "n.txt").write_text(f"{number}\n")
        _git(repo, "add", "n.txt")
        _git(repo, "commit", "-q", "-m", f"c{number}")
    monkeypatch.chdir(repo)
    out = io.StringIO()
    assert main(["release", "--dry-run", "--since", "", "--max-commits", "110"], out=out) == 0
    assert "collected 100/110 commits" in out.getvalue() and "collected 110/110 commits" in out.getvalue()


def test_a_missing_previous_release_commit_falls_back_to_the_newest_commits(repo, monkeypatch):
    _commit(repo, "One", {"a.py": "1\n"})
    monkeypatch.chdir(repo)
    out = io.StringIO()
    assert main(["release", "--dry-run", "--since", "f" * 40], out=out) == 0
    assert "is not in this repository; sending the newest 200 commits" in out.getvalue()


def test_outside_a_checkout_it_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert main(["release", "--dry-run"], out=out) == 2
    assert "not a git checkout" in out.getvalue()
    assert git_head(str(tmp_path)) == ""


def test_without_credentials_it_refuses_to_send(repo, monkeypatch):
    _commit(repo, "One", {"a.py": "1\n"})
    monkeypatch.chdir(repo)
    for name in ("OPBEAT_ORGANIZATION_ID", "OPBEAT_APP_ID", "OPBEAT_SECRET_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    out = io.StringIO()
    assert main(["release"], out=out) == 2
    assert "organization_id is not set" in out.getvalue()


def test_the_agents_release_defaults_to_the_checkouts_head_commit(repo, monkeypatch):
    from opbeat_agent.config import config_build

    head = _commit(repo, "One", {"a.py": "1\n"})
    monkeypatch.chdir(repo)
    assert config_build(environ={}).release == head
    assert config_build(environ={"OPBEAT_RELEASE": "v7"}).release == "v7"
