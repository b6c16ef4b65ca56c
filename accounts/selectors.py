"""Reads that cross tenants. Every dashboard query starts from one of these accessors, each
condition on its own line, so a reviewer can see that it is scoped to the user's organizations.
A missing object and another organization's object are the same 404.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from .models import App, Invite, Membership, Organization, User, invite_token_hash


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


def membership_for_member(user: User, organization: Organization) -> Membership:
    """The user's own membership of an organization already resolved by ``organization_for_member``."""
    membership = Membership.objects.filter(
        organization=organization,
        user=user,
    ).first()
    if membership is None:
        raise Http404("No such organization")
    return membership


def memberships_of_organization(organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.select_related("user")
        .filter(
            organization=organization,
        )
        .order_by("user__email")
    )


def membership_of_organization(organization: Organization, membership_id: int) -> Membership:
    """A membership of an organization already resolved by ``organization_for_member``; another
    organization's membership id is the same 404 as a missing one."""
    membership = (
        Membership.objects.select_related("user", "organization")
        .filter(
            pk=membership_id,
            organization=organization,
        )
        .first()
    )
    if membership is None:
        raise Http404("No such member")
    return membership


def invites_pending(organization: Organization) -> QuerySet[Invite]:
    """Invites not used or revoked, expired ones included (an owner can send those again)."""
    return Invite.objects.filter(
        organization=organization,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
    ).order_by("-sent_at")


def invite_of_organization(organization: Organization, invite_id: int) -> Invite:
    """A pending invite of an organization already resolved by ``organization_for_member``."""
    invite = Invite.objects.filter(
        pk=invite_id,
        organization=organization,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
    ).first()
    if invite is None:
        raise Http404("No such invite")
    return invite


def invite_for_token(token: str) -> Invite:
    """An invite is reached by its secret token alone: the token is what the invitee holds. Used,
    revoked and expired invites are returned too, so the page can say which; the caller checks
    ``Invite.state``."""
    invite = (
        Invite.objects.select_related("organization")
        .filter(
            token_hash=invite_token_hash(token),
        )
        .first()
    )
    if invite is None:
        raise Http404("This invite link is not valid")
    return invite


def apps_of_organization(organization: Organization) -> QuerySet[App]:
    return App.objects.filter(
        organization=organization,
    ).order_by("name")
