"""Writes on the tenancy nouns: sign-up, organizations, members, apps and their tokens."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from .models import App, Membership, Organization, User, secret_token_new


@transaction.atomic
def organization_create(*, name: str, owner: User) -> Organization:
    organization = Organization.objects.create(name=name)
    Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    return organization


@transaction.atomic
def app_create(*, organization: Organization, name: str) -> App:
    return App.objects.create(organization=organization, name=name)


@transaction.atomic
def app_token_rotate(*, app: App) -> App:
    # The intake caches tokens for OPBEAT_LIMITS["token_cache_seconds"] (30 s), so the old token
    # stops working within a minute without any cross-process signalling.
    app.secret_token = secret_token_new()
    app.token_rotated_at = timezone.now()
    app.save(update_fields=["secret_token", "token_rotated_at"])
    return app
