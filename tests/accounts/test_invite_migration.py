"""The migration that stores invite tokens hashed: existing links keep working, no token is left
in clear, and invites whose link the inviter was shown stop verifying addresses."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("accounts", "0004_app_secret_token_drop_clear")]
AFTER = [("accounts", "0005_invite_hashed_token_expiry_revoke")]


@pytest.mark.django_db(transaction=True)
def test_existing_invite_tokens_are_hashed_and_stop_verifying():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    owner = old.get_model("accounts", "User").objects.create(username="o@example.com", email="o@example.com")
    organization = old.get_model("accounts", "Organization").objects.create(name="Acme", public_id="a" * 16)
    old.get_model("accounts", "Invite").objects.create(
        organization=organization, email="c@corp.test", token="ab" * 20, invited_by=owner
    )
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps
        invite = new.get_model("accounts", "Invite").objects.get()
        assert invite.token_hash == hashlib.sha256(("ab" * 20).encode()).hexdigest()
        assert invite.verifies_email is False
        assert invite.expires_at > invite.created_at
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM accounts_invite")
            assert not any("ab" * 20 == value for row in cursor.fetchall() for value in row)
    finally:
        # Back to the latest state for the tests after this one (flushes the rows).
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
