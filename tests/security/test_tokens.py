"""Secret tokens and owner-only powers over apps, as an attacker or a member sees them.

An app's secret token lets anyone send events as that app: it is kept as a hash only (in the
database and in both intake cache tiers), shown once to an owner when it is made, and only an
owner creates apps, rotates tokens and sets the webhook URL. The files of the embedded run under
var/ (secret key, SQLite database, mail with password-reset links, cache, queue) belong to the
server's user alone.
"""

from __future__ import annotations

import html
import os
import pickle
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection

from accounts.models import App, Membership
from intake import auth as intake_auth
from processing.models import AppAlertSettings
from tests.factories import org_app_create, user_create

REPO = Path(__file__).resolve().parents[2]
_TOKEN_ON_PAGE = re.compile(r'id="secret-token"[^>]*>\s*([^<\s]+)\s*<')


@pytest.fixture(autouse=True)
def intake_caches_clean():
    # Primary keys and public ids repeat across rolled-back tests: start with empty caches.
    intake_auth.app_credentials_cache_clear()
    cache.clear()
    yield
    intake_auth.app_credentials_cache_clear()


@pytest.fixture
def acme(db):
    """An owner, their organization and app, and a plain member of that organization."""
    owner, organization, app = org_app_create(org_name="Acme", app_name="web")
    member = user_create()
    Membership.objects.create(organization=organization, user=member, role=Membership.Role.MEMBER)
    return owner, organization, app, member


def _token_on(page) -> str:
    match = _TOKEN_ON_PAGE.search(page.text)
    assert match, "the page shows no secret token"
    return match.group(1)


def _owner_creates_app(client, owner, organization, name: str = "shop") -> tuple[App, str]:
    """The owner creates an app in the UI and copies the token off the page that follows."""
    client.force_login(owner)
    page = client.post(f"/orgs/{organization.public_id}/apps/new/", {"name": name}, follow=True)
    assert page.status_code == 200
    return App.objects.get(organization=organization, name=name), _token_on(page)


def _intake_post(client, app: App, token: str):
    # A body the intake refuses as invalid, after authenticating: 400 means the token was right,
    # 403 that it was wrong, and nothing is queued either way.
    url = f"/api/v1/organizations/{app.organization.public_id}/apps/{app.public_id}/errors/"
    return client.generic(
        "POST", url, b"not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def _pages_of(organization, app) -> list[str]:
    base = f"/orgs/{organization.public_id}"
    return [
        "/",
        f"{base}/",
        f"{base}/apps/{app.public_id}/",
        f"{base}/apps/{app.public_id}/settings/",
        f"{base}/apps/{app.public_id}/settings/rotate-token/",
        f"{base}/apps/{app.public_id}/alerts/",
        f"{base}/apps/{app.public_id}/releases/",
        f"{base}/apps/{app.public_id}/performance/",
    ]


def test_secret_token_is_stored_in_neither_the_database_nor_the_caches_in_clear(client, acme):
    owner, organization, _, _ = acme
    app, token = _owner_creates_app(client, owner, organization)
    assert len(token) >= 32

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_app WHERE id = %s", [app.pk])
        row = cursor.fetchone()
    assert not any(token in str(value) for value in row)

    # The intake looks the app up (a wrong token: refused, nothing queued), which fills both tiers.
    assert _intake_post(client, app, "not-the-token").status_code == 403
    assert _intake_post(client, app, token).status_code == 400
    second_tier = [cache.get(f"{prefix}:{organization.public_id}:{app.public_id}") for prefix in ("intake:app", "intake:app-hash")]
    stored = [value for value in second_tier if value is not None]
    assert stored, "the second tier holds nothing for the app"
    blob = pickle.dumps(stored) + pickle.dumps(intake_auth._process_cache)
    assert token.encode() not in blob
    assert token.encode().hex().encode() not in blob


def test_token_is_shown_once_then_only_a_placeholder(client, acme):
    owner, organization, _, _ = acme
    app, token = _owner_creates_app(client, owner, organization)
    settings_url = f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/"
    page = client.get(settings_url)
    assert page.status_code == 200
    assert token not in page.text
    assert "Rotate secret token" in page.text
    # The set-up snippets are still there, with a placeholder where the token goes.
    assert '"SECRET_TOKEN": "<secret token>"' in html.unescape(page.text)


def test_member_sees_no_token_and_cannot_rotate_create_apps_or_set_the_webhook(client, acme):
    owner, organization, _, member = acme
    app, token = _owner_creates_app(client, owner, organization)
    AppAlertSettings.objects.create(app=app, webhook_url="https://hooks.example.com/owner-secret-path")

    client.force_login(member)
    for url in _pages_of(organization, app):
        page = client.get(url)
        assert token not in page.text, url
        assert "owner-secret-path" not in page.text, url
        assert "Rotate secret token" not in page.text, url
    alerts = client.get(f"/orgs/{organization.public_id}/apps/{app.public_id}/alerts/")
    assert alerts.status_code == 200
    assert "Webhook: set" in alerts.text

    rotate = f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/rotate-token/"
    assert client.get(rotate).status_code == 403
    assert client.post(rotate).status_code == 403
    assert _intake_post(client, app, token).status_code == 400  # still the same token

    assert client.get(f"/orgs/{organization.public_id}/apps/new/").status_code == 403
    assert client.post(f"/orgs/{organization.public_id}/apps/new/", {"name": "sneaky"}).status_code == 403
    assert not App.objects.filter(name="sneaky").exists()

    policy = client.post(
        f"/orgs/{organization.public_id}/apps/{app.public_id}/alerts/",
        {"section": "policy", "webhook_url": "https://attacker.example.net/hook", "spike_threshold": 1},
    )
    assert policy.status_code == 403
    assert AppAlertSettings.objects.get(app=app).webhook_url == "https://hooks.example.com/owner-secret-path"

    # Someone from another organization: the same powers are a 404, whatever the method.
    stranger, _, _ = org_app_create(org_name="Stranger Co")
    client.force_login(stranger)
    assert client.get(rotate).status_code == 404
    assert client.post(rotate).status_code == 404
    assert client.get(f"/orgs/{organization.public_id}/apps/new/").status_code == 404
    assert client.post(f"/orgs/{organization.public_id}/apps/{app.public_id}/alerts/", {"section": "policy"}).status_code == 404


def test_rotation_asks_first_and_the_old_token_stops_working(client, acme, settings):
    # No process cache, as once the intake's cache time has passed.
    settings.OPBEAT_LIMITS = {**settings.OPBEAT_LIMITS, "token_cache_seconds": 0}
    owner, organization, _, _ = acme
    app, old = _owner_creates_app(client, owner, organization)
    assert _intake_post(client, app, old).status_code == 400

    rotate = f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/rotate-token/"
    confirm = client.get(rotate)
    assert confirm.status_code == 200
    assert "stops working" in confirm.text
    assert re.search(r'<form method="post"[^>]*action="' + re.escape(rotate) + '"', confirm.text)
    assert "confirm(" not in confirm.text
    # Asking changed nothing.
    assert _intake_post(client, app, old).status_code == 400

    rotated = client.post(rotate, follow=True)
    assert rotated.status_code == 200
    new = _token_on(rotated)
    assert new != old
    assert "will not be shown again" in rotated.text
    assert _intake_post(client, app, old).status_code == 403
    assert _intake_post(client, app, new).status_code == 400
    # Shown once: the settings page no longer has it.
    assert new not in client.get(f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/").text


_EMBEDDED_PROBE = """
import django
django.setup()
from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import connection
from kombu import Connection

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE probe (x integer)")
    cursor.execute("INSERT INTO probe VALUES (1)")
send_mail("Reset your password", "https://example.com/reset/secret-link/", None, ["a@example.com"])
cache.set("probe", "value")
with Connection(settings.CELERY_BROKER_URL, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS) as conn:
    conn.SimpleQueue("probe").put({"x": 1})
"""


def _modes_open_to_others(var_dir: Path) -> list[str]:
    found = []
    for path in [var_dir, *var_dir.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(var_dir.parent)} {stat.filemode(mode)}")
    return found


def test_embedded_files_under_var_are_private_to_the_server_user(tmp_path):
    var_dir = tmp_path / "var"
    # An install from before: var/ and its secret key readable by everyone.
    var_dir.mkdir(mode=0o755)
    os.chmod(var_dir, 0o755)
    (var_dir / "secret_key").write_text("an-old-key-from-before")
    os.chmod(var_dir / "secret_key", 0o644)
    (var_dir / "mail").mkdir()
    (var_dir / "mail" / "old.log").write_text("https://example.com/reset/old-link/")
    os.chmod(var_dir / "mail", 0o755)
    os.chmod(var_dir / "mail" / "old.log", 0o644)
    # Something the server did not put there (OPBEAT_VAR_DIR may name a shared directory).
    (var_dir / "not-ours.sh").write_text("#!/bin/sh\n")
    os.chmod(var_dir / "not-ours.sh", 0o755)

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "BROKER_URL", "REDIS_URL", "EMAIL_URL", "EMAIL_HOST", "SECRET_KEY"}
    }
    env.update(OPBEAT_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="opbeat_server.settings")
    # A permissive umask, as a login shell usually has: the server must not depend on it.
    run = subprocess.run(
        [sys.executable, "-c", f"import os; os.umask(0o022)\n{_EMBEDDED_PROBE}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    made = {path.relative_to(var_dir).parts[0] for path in var_dir.rglob("*")}
    assert {"secret_key", "opbeat.sqlite3", "mail", "cache", "queue"} <= made
    assert len(list((var_dir / "mail").iterdir())) == 2
    assert _modes_open_to_others(var_dir) == ["var/not-ours.sh -rwxr-xr-x"]
    assert stat.S_IMODE(var_dir.stat().st_mode) == 0o700
