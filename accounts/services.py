"""Writes on the tenancy nouns: sign-up, organizations, members, invites, apps and their tokens.

Views and the management command call these; nothing here reads a request or renders a page.
Nothing here checks who is asking: callers resolve the organization through
``accounts.selectors`` (which scopes it to the user) and check the role first.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from .models import App, Invite, Membership, Organization, User, secret_token_hash, secret_token_new
from .verification import user_email_mark_verified


class InvalidCredentials(Exception):
    """The email belongs to an existing user, and the password given is not theirs."""


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


def invite_url(*, invite: Invite) -> str:
    # Absolute, from BASE_URL: the link travels by email and is copied by hand, so it must not
    # depend on the Host header of whoever created it.
    return settings.BASE_URL + reverse("invite_accept", kwargs={"token": invite.token})


@transaction.atomic
def invite_create(*, organization: Organization, email: str, invited_by: User) -> Invite:
    """A pending invite for ``email``, mailed to it; inviting the same address again reuses it."""
    email = email.strip().lower()
    invite = Invite.objects.filter(organization=organization, email=email, accepted_at__isnull=True).first()
    if invite is None:
        invite = Invite.objects.create(organization=organization, email=email, invited_by=invited_by)
    context = {"invite": invite, "organization": organization, "invited_by": invited_by, "url": invite_url(invite=invite)}
    # One line: names are free text, and a newline in a header would make send_mail refuse it.
    subject = " ".join(render_to_string("accounts/email/invite_subject.txt", context).split())
    body = render_to_string("accounts/email/invite_body.txt", context)
    # Sent after commit so a rolled-back invite never reaches anyone. Delivery failure must not
    # lose the invite: the owner sees the link on the organization page and can pass it on.
    transaction.on_commit(lambda: send_mail(subject, body, None, [email], fail_silently=True))
    return invite


@transaction.atomic
def invite_accept(*, invite: Invite, user: User) -> Membership:
    """``user`` joins the invite's organization as a member; the invite is used up.

    The link is the credential (the owner may hand it over outside email), so the account's email
    need not match the invited address. When it does match, accepting verifies that address: the
    link was mailed there. (The owner could also have copied it from the organization page; they
    can assign issues in their organization by hand anyway.)
    """
    invite = Invite.objects.select_for_update().get(pk=invite.pk)
    if user.email.lower() == invite.email.lower():
        user_email_mark_verified(user=user)
    membership, _ = Membership.objects.get_or_create(
        organization=invite.organization,
        user=user,
        defaults={"role": Membership.Role.MEMBER},
    )
    if invite.accepted_at is None:
        invite.accepted_at = timezone.now()
        invite.save(update_fields=["accepted_at"])
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
