"""Upgrading hashes the tokens apps already have: agents configured before keep working, and the
clear tokens are gone from the database and from the intake's second cache tier."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from intake.auth import app_credentials_cache_clear

BEFORE = [("accounts", "0002_email_verification")]
AFTER = [("accounts", "0004_app_secret_token_drop_clear")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_existing_clear_tokens_are_hashed_and_keep_working(client):
    old_apps = _migrate(BEFORE)
    try:
        Organization = old_apps.get_model("accounts", "Organization")
        App = old_apps.get_model("accounts", "App")
        organization = Organization.objects.create(name="Before", public_id="00000000000000aa")
        clear = "a" * 36 + "beef"
        app = App.objects.create(organization=organization, name="web", public_id="00000000000000bb", secret_token=clear)
        App.objects.create(organization=organization, name="api", public_id="00000000000000cc", secret_token="b" * 40)
        # What the intake of before kept in its second tier: the token in clear.
        old_key = f"intake:app:{organization.public_id}:{app.public_id}"
        cache.set(old_key, (app.pk, organization.public_id, app.public_id, clear.encode(), None), 60)
    finally:
        _migrate(AFTER)

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_app WHERE public_id = %s", ["00000000000000bb"])
        row = cursor.fetchone()
    assert not any(clear in str(value) for value in row)
    assert cache.get(old_key) is None

    app_credentials_cache_clear()
    url = "/api/v1/organizations/00000000000000aa/apps/00000000000000bb/errors/"
    # 400: authenticated, the body refused (nothing queued); 403: the token did not match.
    assert client.post(url, b"not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {clear}").status_code == 400
    assert client.post(url, b"not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {'b' * 40}").status_code == 403
    # The settings page recognizes it by its last characters.
    from accounts.models import App as CurrentApp

    assert CurrentApp.objects.get(public_id="00000000000000bb").secret_token_hint == "beef"
