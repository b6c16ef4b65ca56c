"""Writes on the tenancy nouns: sign-up, organizations, members, invites, apps and their tokens.

Views and the management command call these; nothing here reads a request or renders a page.
Nothing here checks who is asking: callers resolve the organization through
``accounts.selectors`` (which scopes it to the user) and check the role first. What this module
does guarantee whoever calls it: an organization always keeps at least one owner, and an invite
joins only while it is pending (not used, revoked or expired).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from .mail_limits import invite_mail_limit_hit
from .models import (
    App,
    Invite,
    Membership,
    Organization,
    User,
    invite_token_hash,
    secret_token_hash,
    secret_token_new,
)
from .signals import member_removed
from .verification import user_email_mark_verified

# How long an invite link works after it was (last) mailed.
INVITE_MAX_AGE = timedelta(days=7)


class InvalidCredentials(Exception):
    """The email belongs to an existing user, and the password given is not theirs."""


class LastOwner(Exception):
    """The change would leave the organization without an owner."""


class InviteNotUsable(Exception):
    """The invite was used, revoked or expired meanwhile."""


@transaction.atomic
def organization_create(*, name: str, owner: User) -> Organization:
    organization = Organization.objects.create(name=name)
    Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    return organization


@transaction.atomic
def user_signup(*, email: str, password: str, organization_name: str | None) -> tuple[User, Organization | None]:
    """A new user; with an organization name, also their organization (they own it).

    Someone signing up through an invite passes no organization name: they join the inviter's.
    """
    user = User.objects.create_user(email=email, password=password)
    organization = organization_create(name=organization_name, owner=user) if organization_name else None
    return user, organization


def invite_url(*, token: str) -> str:
    # Absolute, from BASE_URL: the link travels by email, so it must not depend on the Host
    # header of whoever created it.
    return settings.BASE_URL + reverse("invite_accept", kwargs={"token": token})


@transaction.atomic
def invite_create(*, organization: Organization, email: str, invited_by: User) -> Invite:
    """Mail ``email`` a link to join ``organization``.

    Inviting an address with a pending (or expired) invite mails it again with a new link and a
    new expiry instead of adding a second invite; the earlier link stops working. Raises
    ``MailLimited`` (nothing changes, nothing is sent) over ``accounts.mail_limits``.
    """
    email = email.strip().lower()
    # Checked before anything changes: a refused re-send must leave the mailed link working.
    invite_mail_limit_hit(organization_public_id=organization.public_id, email=email, sender_id=invited_by.pk)
    # Hex, like every other token here: it survives being copied out of any mail client.
    token = secrets.token_hex(32)
    now = timezone.now()
    invite = (
        Invite.objects.select_for_update()
        .filter(
            organization=organization,
            email=email,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
        )
        .first()
    )
    if invite is None:
        invite = Invite(organization=organization, email=email)
    invite.invited_by = invited_by
    invite.token_hash = invite_token_hash(token)
    invite.sent_at = now
    invite.expires_at = now + INVITE_MAX_AGE
    # A new link that only the mailbox receives proves the mailbox again.
    invite.verifies_email = True
    invite.save()
    url = invite_url(token=token)
    context = {
        "invite": invite,
        "organization": organization,
        "invited_by": invited_by,
        "url": url,
        "days": INVITE_MAX_AGE.days,
    }
    # One line: names are free text, and a newline in a header would make send_mail refuse it.
    subject = " ".join(render_to_string("accounts/email/invite_subject.txt", context).split())
    body = render_to_string("accounts/email/invite_body.txt", context)
    # Sent after commit so a rolled-back invite never reaches anyone. The link is in this mail
    # only (the inviter is never shown it: see accounts.verification); if it does not arrive,
    # the owner can send it again.
    transaction.on_commit(lambda: send_mail(subject, body, None, [email], fail_silently=True))
    return invite


@transaction.atomic
def invite_revoke(*, invite: Invite) -> Invite:
    """The invite's link stops working; a used invite stays as it is."""
    Invite.objects.filter(pk=invite.pk, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    invite.refresh_from_db()
    return invite


@transaction.atomic
def invite_accept(*, invite: Invite, user: User) -> Membership:
    """``user`` joins the invite's organization as a member; the invite is used up.

    The link is the credential (the invitee may forward it), so the account's email need not
    match the invited address. When it does, accepting verifies that address: the link was
    mailed there and nowhere else. Raises ``InviteNotUsable`` if the invite was used, revoked or
    expired meanwhile.
    """
    invite = Invite.objects.select_for_update().get(pk=invite.pk)
    if invite.state() != Invite.State.PENDING:
        raise InviteNotUsable(invite.state())
    if invite.verifies_email and user.email.lower() == invite.email.lower():
        user_email_mark_verified(user=user)
    membership, _ = Membership.objects.get_or_create(
        organization=invite.organization,
        user=user,
        defaults={"role": Membership.Role.MEMBER},
    )
    invite.accepted_at = timezone.now()
    invite.save(update_fields=["accepted_at"])
    return membership


def _owner_count_locked(organization: Organization) -> int:
    # The organization's row is the lock every change of its owners takes first, so two owners
    # demoting or removing each other at once cannot both see "another owner is left".
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    return Membership.objects.filter(organization=organization, role=Membership.Role.OWNER).count()


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    """Remove a member (or oneself: leaving). Raises ``LastOwner`` for the only owner.

    Access and automatic assignment both go through memberships (``accounts.selectors``,
    ``processing.suspects.member_for_email``), so both end with the row; ``member_removed`` lets
    the apps holding per-member state (issue assignees) let go of the person too.
    """
    owners = _owner_count_locked(membership.organization)
    membership = Membership.objects.filter(pk=membership.pk).first()
    if membership is None:
        return
    if membership.role == Membership.Role.OWNER and owners <= 1:
        raise LastOwner(membership.organization.name)
    membership.delete()
    member_removed.send(sender=Membership, organization=membership.organization, user=membership.user)


@transaction.atomic
def membership_role_set(*, membership: Membership, role: str) -> Membership:
    """Make a member an owner or an owner a member. Raises ``LastOwner`` when demoting the only owner."""
    if role not in Membership.Role.values:
        raise ValueError(f"unknown role {role!r}")
    owners = _owner_count_locked(membership.organization)
    membership.refresh_from_db()
    if membership.role == Membership.Role.OWNER and role != Membership.Role.OWNER and owners <= 1:
        raise LastOwner(membership.organization.name)
    if membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def _app_token_set(app: App) -> str:
    """Give ``app`` a new secret token and return it: the only time it exists in clear. The
    caller shows it once (or prints it) and keeps it nowhere."""
    token = secret_token_new()
    app.secret_token_hash = secret_token_hash(token.encode())
    app.secret_token_hint = token[-4:]
    return token


@transaction.atomic
def app_create(*, organization: Organization, name: str) -> tuple[App, str]:
    """The new app and its secret token (shown once: only its hash is stored)."""
    app = App(organization=organization, name=name)
    token = _app_token_set(app)
    app.save()
    return app, token


@transaction.atomic
def app_token_rotate(*, app: App) -> str:
    """A new secret token for ``app``, returned once; the old one stops working.

    The intake caches an app for OPBEAT_LIMITS["token_cache_seconds"] (30 s), so the old token
    stops working within a minute without any cross-process signalling.
    """
    token = _app_token_set(app)
    app.token_rotated_at = timezone.now()
    app.save(update_fields=["secret_token_hash", "secret_token_hint", "token_rotated_at"])
    return token


@transaction.atomic
def app_provision(
    *, email: str, password: str, organization_name: str, app_name: str, rotate_token: bool = False
) -> tuple[App, str | None]:
    """Create or reuse a user, one of their organizations (by name) and an app in it.

    For provisioning scripts: running it twice with the same arguments returns the same app.
    The secret token comes back when the app is created, or with ``rotate_token`` (a new one);
    otherwise None, as only its hash is kept. An existing user must give their own password, so
    the command cannot be used to reach someone else's organization.
    """
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        # No password validators here: the operator chose this password for a script or a
        # container; the web sign-up, where strangers pick passwords, enforces them.
        user = User.objects.create_user(email=email, password=password)
    elif not user.check_password(password):
        raise InvalidCredentials(f"{email} exists and the password does not match")
    # An operator made (or knows the password of) this account: nobody else could claim the address.
    user_email_mark_verified(user=user)
    organization = (
        Organization.objects.filter(
            name=organization_name,
            memberships__user=user,
        )
        .order_by("id")
        .first()
    )
    if organization is None:
        organization = organization_create(name=organization_name, owner=user)
    app = App.objects.filter(organization=organization, name=app_name).first()
    if app is None:
        return app_create(organization=organization, name=app_name)
    if rotate_token:
        return app, app_token_rotate(app=app)
    return app, None
