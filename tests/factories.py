"""Small helpers that make the tenancy rows tests need, through the real services."""

from __future__ import annotations

import itertools

from accounts.models import App, Organization, User
from accounts.services import app_create, organization_create

_seq = itertools.count(1)


def user_create(email: str | None = None, password: str = "correct horse battery") -> User:
    email = email or f"user{next(_seq)}@example.com"
    return User.objects.create_user(email=email, password=password)


def org_app_token_create(
    owner: User | None = None, org_name: str | None = None, app_name: str = "web"
) -> tuple[User, Organization, App, str]:
    """An owner, their organization, an app in it and the app's secret token: the token exists in
    clear only here (the database keeps its hash), so a test that sends events takes it from this."""
    owner = owner or user_create()
    organization = organization_create(name=org_name or f"Org {next(_seq)}", owner=owner)
    app, token = app_create(organization=organization, name=app_name)
    return owner, organization, app, token


def org_app_create(owner: User | None = None, org_name: str | None = None, app_name: str = "web") -> tuple[User, Organization, App]:
    """The same, for tests that never send as the app."""
    owner, organization, app, _ = org_app_token_create(owner=owner, org_name=org_name, app_name=app_name)
    return owner, organization, app
