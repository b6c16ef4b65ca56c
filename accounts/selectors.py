"""Reads that cross tenants. Every dashboard query starts from one of these accessors, each
condition on its own line, so a reviewer can see that it is scoped to the user's organizations.
A missing object and another organization's object are the same 404.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from .models import App, Organization, User


def organizations_for_member(user: User) -> QuerySet[Organization]:
    return Organization.objects.filter(
        memberships__user=user,
    ).order_by("name")


def organization_for_member(user: User, organization_public_id: str) -> Organization:
    organization = Organization.objects.filter(
        public_id=organization_public_id,
        memberships__user=user,
    ).first()
    if organization is None:
        raise Http404("No such organization")
    return organization


def app_for_member(user: User, organization_public_id: str, app_public_id: str) -> App:
    app = (
        App.objects.select_related("organization")
        .filter(
            public_id=app_public_id,
            organization__public_id=organization_public_id,
            organization__memberships__user=user,
        )
        .first()
    )
    if app is None:
        raise Http404("No such app")
    return app
