from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import App, Organization, User
from tests.factories import org_app_create


@dataclass
class Member:
    user: User
    organization: Organization
    app: App
    client: Client

    def url(self, name: str, *args) -> str:
        return reverse(f"dashboards:{name}", args=[self.organization.public_id, self.app.public_id, *args])


@pytest.fixture
def member(db, client) -> Member:
    """A logged-in owner of an organization with one app."""
    user, organization, app = org_app_create()
    client.force_login(user)
    return Member(user=user, organization=organization, app=app, client=client)
