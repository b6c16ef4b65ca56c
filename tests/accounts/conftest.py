"""Fixtures for the accounts pages: users and organizations made through the real services."""

from __future__ import annotations

import pytest
from django.core.cache import cache

import secrets
import time
from datetime import timedelta
from types import SimpleNamespace

from django.utils import timezone

from accounts.models import Invite, Membership, Organization, User, invite_token_hash
from tests.factories import org_app_create, user_create

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fresh_mail_limits():
    """Mail limits are counted in the shared cache (Redis when REDIS_URL is set): start each test at zero."""
    cache.clear()


@pytest.fixture
def owner_org_app(db):
    """An owner, their organization and one app in it."""
    return org_app_create(org_name="Acme", app_name="web")


@pytest.fixture
def member(owner_org_app):
    """A plain member (not owner) of the owner's organization."""
    _, organization, _ = owner_org_app
    user = user_create()
    Membership.objects.create(organization=organization, user=user, role=Membership.Role.MEMBER)
    return user


@pytest.fixture
def outsider(db):
    """A user with an organization and app of their own, and no access to Acme."""
    owner, organization, app = org_app_create(org_name="Other Co", app_name="other")
    return owner


def invite_make(
    organization: Organization, email: str, *, invited_by: User | None = None, **fields
) -> tuple[Invite, str]:
    """A pending invite row and the raw token of its link, without the mail (``fields`` override
    the defaults, e.g. ``expires_at`` in the past or ``verifies_email=False``)."""
    token = secrets.token_urlsafe(32)
    fields.setdefault("expires_at", timezone.now() + timedelta(days=7))
    invite = Invite.objects.create(
        organization=organization, email=email, invited_by=invited_by, token_hash=invite_token_hash(token), **fields
    )
    return invite, token


def clock_advance(monkeypatch, seconds: float) -> None:
    """Move the clock of ``accounts.throttle`` (the mail limits' windows) ``seconds`` ahead."""
    import accounts.throttle

    start, base = time.time(), accounts.throttle.time.time() + seconds
    monkeypatch.setattr(accounts.throttle, "time", SimpleNamespace(time=lambda: base + time.time() - start))
