"""Proving that a person reads a mailbox: signed links mailed to an address, and what they verify.

"Verified" means one thing: the address's owner followed a link that was mailed to that address
and that nobody else has seen. Three links qualify:

- the verification link of an account's own address (``user_email_verify``);
- the confirmation link of a commit-email alias (``dashboards.aliases``);
- an invite link, for the address it was mailed to only (``accounts.services.invite_accept``):
  the invite's token exists only in that mail (the database keeps its sha256, the inviter is
  never shown the link), so opening it proves the mailbox as well as a verification link does.
  Invites made while the inviter was also shown the link are marked ``verifies_email=False``.

Accepting an invite while signed up (or signing up) with any other address proves nothing about
that address. An operator provisioning an account (``opbeat_create_app``) also marks it verified.

A token is ``django.core.signing`` over (kind, row id, address), so it needs no table, expires
after ``TOKEN_MAX_AGE``, and is single use in effect: it verifies only the address it was made
for, following it again changes nothing, and it dies with its row (a removed alias) or when the
account's address is no longer the one it names. How often a link may be mailed is counted by
``accounts.mail_limits``.

Nothing here reads a request or checks who is asking: the link itself is the credential.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from .mail_limits import verification_mail_limit_hit
from .models import User

TOKEN_MAX_AGE = timedelta(days=3)
_SALT = "opbeat.accounts.verification"


def email_token_make(*, kind: str, pk: int, email: str) -> str:
    return signing.dumps({"k": kind, "p": pk, "e": email}, salt=_SALT)


def email_token_read(*, token: str, kind: str) -> tuple[int, str] | None:
    """(row id, address) of a valid, unexpired token of ``kind``; None otherwise."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=TOKEN_MAX_AGE)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    if not isinstance(data, dict) or data.get("k") != kind:
        return None
    pk, email = data.get("p"), data.get("e")
    if not isinstance(pk, int) or not isinstance(email, str):
        return None
    return pk, email


def verification_mail_send(*, email: str, url: str, account: User, alias: bool) -> None:
    """Mail the link after commit (a rolled-back sign-up sends nothing). Delivery failure is not
    fatal: the person can ask for another link."""
    context = {"email": email, "url": url, "account": account, "alias": alias, "days": TOKEN_MAX_AGE.days}
    # One line: a newline in a header would make send_mail refuse it.
    subject = " ".join(render_to_string("accounts/email/verify_subject.txt", context).split())
    body = render_to_string("accounts/email/verify_body.txt", context)
    transaction.on_commit(lambda: send_mail(subject, body, None, [email], fail_silently=True))


def user_verification_url(*, user: User) -> str:
    # From BASE_URL, not the Host header: the link travels by email.
    token = email_token_make(kind="user", pk=user.pk, email=user.email)
    return settings.BASE_URL + reverse("verify_email", kwargs={"token": token})


@transaction.atomic
def user_verification_send(*, user: User) -> bool:
    """Mail ``user`` a link to verify their address; False (nothing sent) when it is verified
    already. Raises ``MailLimited`` (nothing sent) over the limits of ``accounts.mail_limits``."""
    # From the database, not the (possibly older) object: another tab may have verified it.
    if user.email_verified_at is not None or User.objects.filter(pk=user.pk, email_verified_at__isnull=False).exists():
        return False
    verification_mail_limit_hit(email=user.email.lower(), account_id=user.pk, alias=False)
    # A record of when the last link left; the limit itself is counted in the cache.
    user.email_verification_sent_at = timezone.now()
    User.objects.filter(pk=user.pk).update(email_verification_sent_at=user.email_verification_sent_at)
    verification_mail_send(email=user.email, url=user_verification_url(user=user), account=user, alias=False)
    return True


@transaction.atomic
def user_email_mark_verified(*, user: User) -> User:
    """The user's current address is theirs: they followed a link only that mailbox received,
    or an operator created them (see the module docstring)."""
    if user.email_verified_at is None:
        user.email_verified_at = timezone.now()
        User.objects.filter(pk=user.pk, email_verified_at__isnull=True).update(email_verified_at=user.email_verified_at)
    return user


def user_email_verify(*, token: str) -> User | None:
    """The user whose address the token verifies (now verified), or None for a bad, expired or
    stale link (the account's address changed since it was sent)."""
    found = email_token_read(token=token, kind="user")
    if found is None:
        return None
    pk, email = found
    user = User.objects.filter(pk=pk, email__iexact=email).first()
    if user is None:
        return None
    return user_email_mark_verified(user=user)
