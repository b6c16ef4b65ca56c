"""Proving that a person reads a mailbox: signed links mailed to an address, and what they verify.

A token is ``django.core.signing`` over (kind, row id, address), so it needs no table, expires
after ``TOKEN_MAX_AGE``, and is single use in effect: it verifies only the address it was made
for, following it again changes nothing, and it dies with its row (a removed alias) or when the
account's address is no longer the one it names. Used for a user's own address here and for the
commit-email aliases of ``dashboards.aliases``.

Nothing here reads a request or checks who is asking: the link itself is the credential.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from .models import User

TOKEN_MAX_AGE = timedelta(days=3)
# One mail per user (or alias) per this long: "resend" must not turn us into a mail cannon.
RESEND_INTERVAL = timedelta(minutes=1)
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
    """Mail ``user`` a link to verify their address; False (nothing sent) when they are verified
    already or a link left less than ``RESEND_INTERVAL`` ago."""
    now = timezone.now()
    # One conditional UPDATE: two clicks in two processes cannot both pass the check.
    claimed = User.objects.filter(
        Q(email_verification_sent_at__isnull=True) | Q(email_verification_sent_at__lte=now - RESEND_INTERVAL),
        pk=user.pk,
        email_verified_at__isnull=True,
    ).update(email_verification_sent_at=now)
    if not claimed:
        return False
    user.email_verification_sent_at = now
    verification_mail_send(email=user.email, url=user_verification_url(user=user), account=user, alias=False)
    return True


@transaction.atomic
def user_email_mark_verified(*, user: User) -> User:
    """The user's current address is theirs (they followed our link, accepted an invite mailed
    to it, or an operator created them)."""
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
