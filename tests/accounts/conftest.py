"""Fixtures for the accounts pages: users and organizations made through the real services."""

from __future__ import annotations

import pytest

from accounts.models import Membership
from tests.factories import org_app_create, user_create

PASSWORD = "correct horse battery"


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
