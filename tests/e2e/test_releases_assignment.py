"""Issue 5's proof, end to end on the production stack (gunicorn, a Celery worker, RabbitMQ,
PostgreSQL, Redis) with a real SMTP server (aiosmtpd, started here):

the second author joins through the invite mailed to her (which verifies her address); a git
repository made by the test, two releases posted by ``opbeat-agent release`` with commits
by two authors touching different lines; an example app (the agent, release from ``git rev-parse
HEAD``) raises in a line the second author changed, moved down by a later commit of the first;
the issue is assigned to the second author, who gets the email with the right link; the first
author gets nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.smtp_server import SmtpServer

from . import stack
from .conftest import ProductionStack

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
AL, BEA = "al@example.com", "bea@example.com"

# Al owns the shop and invites Bea; she joins through the emailed link (which verifies her
# address, so her commits can be assigned to her).
SETUP = """
from accounts.models import User
from accounts.services import app_create, invite_create, organization_create
al = User.objects.create_user(email="al@example.com", password="{password}")
org = organization_create(name="Shop", owner=al)
invite_create(organization=org, email="bea@example.com", invited_by=al)
app, token = app_create(organization=org, name="shop")
print("IDS", org.public_id, app.public_id, token)
"""

ORDERS_V1 = '''\
"""Orders."""


def total(order):
    return sum(order["items"])


def checkout(order):
    discounts = {"WELCOME": 5}
    code = order["code"]
    return total(order) - discounts[code]
'''

EXAMPLE_APP = '''\
import opbeat_agent
from shop.orders import checkout

opbeat_agent.init(instrument=False, transactions_enabled=False)
try:
    checkout({"items": [10, 20], "code": "WELCOME"})
except Exception:
    print("captured", opbeat_agent.capture_exception())
assert opbeat_agent.flush(20), "the agent could not send the error"
'''


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def mail_stack(e2e_database_url, e2e_broker_url, redis_url, var_dir: Path, log_dir: Path, smtp) -> Iterator[ProductionStack]:
    port = stack.port_free()
    base_url = f"http://127.0.0.1:{port}"
    env = stack.child_env(
        var_dir, DATABASE_URL=e2e_database_url, BROKER_URL=e2e_broker_url, REDIS_URL=redis_url, BASE_URL=base_url,
        EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}",
    )  # fmt: skip
    stack.manage("migrate", "--noinput", env=env)
    stack.manage("collectstatic", "--noinput", env=env)
    running = ProductionStack(base_url, env, [])
    try:
        running.processes.append(stack.gunicorn_start(port=port, env=env, log_dir=log_dir))
        running.processes.append(stack.worker_start(env=env, log_dir=log_dir))
        stack.wait_until(
            lambda: running.assert_running() or stack.port_listening(port),
            timeout=stack.START_TIMEOUT, what="gunicorn", on_timeout=running.logs,
        )  # fmt: skip
        yield running
        running.assert_running()
    finally:
        for process in running.processes:
            process.stop()


def git(repo: Path, *args: str, author: str | None = None, date: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(repo.parent), GIT_CONFIG_NOSYSTEM="1")
    if author:
        name = author.split("@")[0].title()
        env.update(GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=author, GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=author)
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    out = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout.strip()


def commit(repo: Path, message: str, *, author: str, date: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", *files)
    git(repo, "commit", "-q", "-m", message, author=author, date=date)
    return git(repo, "rev-parse", "HEAD")


def agent_env(running: ProductionStack, ids: dict, repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPBEAT_", "GIT_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(stack.REPO / "agent"), str(repo)]),
        OPBEAT_ORGANIZATION_ID=ids["org"], OPBEAT_APP_ID=ids["app"], OPBEAT_SECRET_TOKEN=ids["token"],
        OPBEAT_SERVERS=running.base_url, OPBEAT_ENVIRONMENT="production",
    )  # fmt: skip
    return env


def release_post(running: ProductionStack, ids: dict, repo: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "opbeat_agent", "release"], cwd=repo, env=agent_env(running, ids, repo),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_author_of_the_failing_line_is_assigned_and_emailed(mail_stack: ProductionStack, smtp: SmtpServer, tmp_path):
    running = mail_stack
    found = re.search(r"IDS (\w+) (\w+) (\w+)", stack.manage("shell", "-c", SETUP.format(password=PASSWORD), env=running.env))
    ids = {"org": found.group(1), "app": found.group(2), "token": found.group(3)}
    database = running.env["DATABASE_URL"]

    # Bea follows the invite link from her mail and signs up with that address.
    [invite_mail] = smtp.wait_for(BEA, timeout=stack.DIGEST_TIMEOUT)
    invite_link = re.search(r"http://\S+/invites/[0-9a-f]+/", invite_mail.body).group(0)
    assert invite_link.startswith(running.base_url)
    joined = stack.form_post(requests.Session(), invite_link, {"email": BEA, "password": PASSWORD})
    assert f"/orgs/{ids['org']}/" in joined.url
    assert "Verify your email address" not in joined.text

    repo = tmp_path / "shop-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    first = commit(repo, "Create orders", author=AL, date="2026-01-01T09:00:00+00:00",
                   files={"shop/__init__.py": "", "shop/orders.py": ORDERS_V1, "app.py": EXAMPLE_APP})  # fmt: skip

    # Release 1: only Al's commit.
    output = release_post(running, ids, repo)
    assert "previous release: none" in output and f"{first[:7]} Al <al@example.com> Create orders (3 files)" in output
    stack.wait_until(
        lambda: stack.postgres_count(database, "SELECT count(*) FROM processing_release"),
        timeout=stack.DIGEST_TIMEOUT, what="release 1 stored", on_timeout=running.logs,
    )  # fmt: skip

    # Bea changes the return line (the bug); Al later adds lines above it, moving it down.
    buggy = ORDERS_V1.replace("discounts[code]", "discounts[code.lower()]")
    bea_sha = commit(repo, "Accept discount codes in any case", author=BEA, date="2026-01-02T09:00:00+00:00",
                     files={"shop/orders.py": buggy})  # fmt: skip
    moved = buggy.replace('"""Orders."""\n', '"""Orders.\n\nPrices are in cents.\n"""\nimport logging\n')
    al_sha = commit(repo, "Document prices", author=AL, date="2026-01-02T10:00:00+00:00", files={"shop/orders.py": moved})

    # Release 2: the CLI asks the server where release 1 stopped and sends the two new commits.
    output = release_post(running, ids, repo)
    assert f"previous release: {first[:12]}" in output
    assert f"{al_sha[:7]} Al <al@example.com> Document prices (1 files)" in output
    assert f"{bea_sha[:7]} Bea <bea@example.com> Accept discount codes in any case (1 files)" in output
    assert first[:7] + " " not in output.split("previous release")[1].split("\n", 1)[1]
    stack.wait_until(
        lambda: stack.postgres_count(database, "SELECT count(*) FROM processing_releasecommit") == 3,
        timeout=stack.DIGEST_TIMEOUT, what="release 2 stored", on_timeout=running.logs,
    )  # fmt: skip

    # The example app raises KeyError in Bea's line (moved down by Al's later commit); its release is git rev-parse HEAD.
    lines = moved.splitlines()
    failing_line = next(number for number, text in enumerate(lines, 1) if "code.lower()" in text)
    out = subprocess.run([sys.executable, "app.py"], cwd=repo, env=agent_env(running, ids, repo),
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr

    [mail] = stack.wait_until(
        lambda: [m for m in smtp.to(BEA) if "New exception" in m.subject],
        timeout=stack.DIGEST_TIMEOUT, what="the new-issue mail to Bea", on_timeout=running.logs,
    )  # fmt: skip
    assert smtp.to(AL) == []
    issue_id = stack.postgres_count(database, "SELECT id FROM processing_issue")
    link = f"{running.base_url}/orgs/{ids['org']}/apps/{ids['app']}/issues/{issue_id}/"
    assert link in mail.body
    assert "KeyError: 'welcome'" in mail.body
    assert f" >    {failing_line}      return total(order) - discounts[code.lower()]" in mail.body
    assert f"Suspect commit: {bea_sha[:7]} 'Accept discount codes in any case' by Bea <bea@example.com>" in mail.body
    assert stack.postgres_count(
        database,
        "SELECT count(*) FROM processing_issuefollowup f JOIN accounts_user u ON u.id = f.assignee_id WHERE u.email = %s",
        (BEA,),
    ) == 1

    # Bea follows the link and sees why the issue is hers.
    session = requests.Session()
    logged_in = stack.form_post(session, f"{running.base_url}/login/", {"username": BEA, "password": PASSWORD})
    assert "/login/" not in logged_in.url
    page = session.get(link, timeout=30)
    assert page.status_code == 200
    text = stack.page_text(page.text)
    assert f"frame `shop/orders.py:{failing_line}` in `checkout`, changed by {bea_sha[:7]}" in text
    assert "bea@example.com (automatically)" in text
    releases = stack.page_text(session.get(f"{running.base_url}/orgs/{ids['org']}/apps/{ids['app']}/releases/", timeout=30).text)
    assert "Al, Bea" in releases or "Bea, Al" in releases
