"""Small helpers that make the tenancy rows tests need, through the real services."""

from __future__ import annotations

import itertools

from accounts.models import App, Organization, User
from accounts.services import app_create, organization_create

_seq = itertools.count(1)


def user_create(email: str | None = None, password: str = "correct horse battery") -> User:
    email = email or f"user{next(_seq)}@example.com"
    return User.objects.create_user(email=email, password=password)


def org_app_create(owner: User | None = None, org_name: str | None = None, app_name: str = "web") -> tuple[User, Organization, App]:
    owner = owner or user_create()
    organization = organization_create(name=org_name or f"Org {next(_seq)}", owner=owner)
    app = app_create(organization=organization, name=app_name)
    return owner, organization, app
