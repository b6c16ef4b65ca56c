"""``manage.py opbeat_create_app``: one JSON object on stdout, idempotent, no prompts.

The secret token is printed when the app is made or with ``--rotate-token``; a reused app gets
``"secret_token": null`` and a line on stderr (only the token's hash is stored)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import App, Membership, Organization, User, secret_token_hash
from tests.factories import org_app_create, user_create

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("opbeat_create_app", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_creates_user_org_app_and_prints_one_json_object(client):
    out, _ = _run("--email", "ops@example.com", "--password", "pw-for-ci", "--org", "Acme", "--app", "web")
    assert out.count("\n") == 1
    data = json.loads(out)
    assert set(data) == {"organization_id", "app_id", "secret_token"}

    app = App.objects.get()
    assert data == {
        "organization_id": app.organization.public_id,
        "app_id": app.public_id,
        "secret_token": data["secret_token"],
    }
    assert app.secret_token_hash == secret_token_hash(data["secret_token"].encode())
    user = User.objects.get()
    assert Membership.objects.get(user=user).role == Membership.Role.OWNER
    # The user can log in on the web with that password and reach the app.
    assert client.login(username="ops@example.com", password="pw-for-ci")
    page = client.get(f"/orgs/{data['organization_id']}/apps/{data['app_id']}/settings/")
    assert page.status_code == 200
    # An operator made the account: its address counts as verified, so no banner asks for it.
    assert user.email_verified_at is not None
    assert "Verify your email address" not in page.text


def test_rerun_is_idempotent(db):
    first, _ = _run("--email", "ops@example.com", "--password", "pw-for-ci", "--org", "Acme", "--app", "web")
    second, warning = _run("--email", "OPS@example.com", "--password", "pw-for-ci", "--org", "Acme", "--app", "web")
    # The same app; its token was printed the first time only.
    assert json.loads(second) == {**json.loads(first), "secret_token": None}
    assert "--rotate-token" in warning
    assert (User.objects.count(), Organization.objects.count(), App.objects.count()) == (1, 1, 1)

    # A second app in the same organization.
    third, _ = _run("--email", "ops@example.com", "--password", "pw-for-ci", "--org", "Acme", "--app", "worker")
    assert json.loads(third)["organization_id"] == json.loads(first)["organization_id"]
    assert json.loads(third)["app_id"] != json.loads(first)["app_id"]
    assert App.objects.count() == 2


def test_reuses_an_existing_user_org_and_app(db):
    owner, organization, app = org_app_create(owner=user_create(email="dev@example.com"), org_name="Acme", app_name="web")
    out, err = _run("--email", "dev@example.com", "--password", PASSWORD, "--org", "Acme", "--app", "web")
    assert json.loads(out) == {"organization_id": organization.public_id, "app_id": app.public_id, "secret_token": None}
    assert "shown only when it is made" in err and "--rotate-token" in err
    app.refresh_from_db()
    old_hash = app.secret_token_hash

    # --rotate-token: a new token for the same app, printed; the old one no longer matches.
    out, err = _run("--email", "dev@example.com", "--password", PASSWORD, "--org", "Acme", "--app", "web", "--rotate-token")
    data = json.loads(out)
    assert (data["organization_id"], data["app_id"]) == (organization.public_id, app.public_id)
    assert err == ""
    app.refresh_from_db()
    assert app.secret_token_hash == secret_token_hash(data["secret_token"].encode()) != old_hash
    assert App.objects.count() == 1


def test_existing_user_with_wrong_password_is_refused(db):
    user_create(email="dev@example.com")
    with pytest.raises(CommandError, match="password does not match"):
        _run("--email", "dev@example.com", "--password", "guess", "--org", "Acme", "--app", "web")
    assert User.objects.get().email_verified_at is None
    assert Organization.objects.count() == 0


def test_does_not_reuse_an_organization_the_user_is_not_in(db):
    _, theirs, _ = org_app_create(org_name="Acme", app_name="web")
    out, _ = _run("--email", "new@example.com", "--password", "pw-for-ci", "--org", "Acme", "--app", "web")
    assert json.loads(out)["organization_id"] != theirs.public_id
    assert Organization.objects.filter(name="Acme").count() == 2


@pytest.mark.parametrize(
    "args",
    [
        ("--email", "not-an-email", "--password", "pw", "--org", "Acme", "--app", "web"),
        ("--email", "a@example.com", "--password", "pw", "--org", " ", "--app", "web"),
    ],
)
def test_bad_arguments_are_errors(db, args):
    with pytest.raises(CommandError):
        _run(*args)
    assert User.objects.count() == 0


def test_real_process_prints_only_the_json(tmp_path):
    """As a container entrypoint runs it: a fresh embedded install, migrate, then the command twice.
    stdout must hold the JSON object and nothing else (no warnings, no log lines)."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "BROKER_URL", "REDIS_URL"}}
    env["OPBEAT_VAR_DIR"] = str(tmp_path)
    manage = [sys.executable, str(root / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], cwd=root, env=env, check=True, capture_output=True, timeout=300)
    args = ["opbeat_create_app", "--email", "ops@example.com", "--password", "pw-for-ci", "--org", "Acme", "--app", "web"]
    runs = [subprocess.run([*manage, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert run.stdout.endswith("\n") and run.stdout.count("\n") == 1
    first, second = (json.loads(run.stdout) for run in runs)
    assert first == {**second, "secret_token": first["secret_token"]}
    assert len(first["secret_token"]) == 40 and second["secret_token"] is None
    assert runs[0].stderr == "" and "--rotate-token" in runs[1].stderr
    assert len(first["organization_id"]) == 16 and len(first["app_id"]) == 16

    wrong = subprocess.run([*manage, *args[:4], "nope", *args[5:]], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0
    assert wrong.stdout == ""
    assert "password does not match" in wrong.stderr
