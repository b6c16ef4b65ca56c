"""Commit-email aliases: adding one mails a link to the address, and only a confirmed alias is
used to assign issues (``processing.suspects.member_for_email``).

An unverified alias holds nothing: another account may claim the same address (its pending row
is replaced, so the earlier link dies with it). The confirmation page names the account the
address will belong to and asks for a POST, so a mail scanner following the link, or a person
who never asked, does not hand their commits to someone else.

This module never touches events; it writes ``EmailAlias`` rows only.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.mail_limits import MailLimited, verification_mail_limit_hit
from accounts.models import User
from accounts.verification import email_token_make, email_token_read, verification_mail_send
from processing.models import EmailAlias

_KIND = "alias"


class AliasRefused(Exception):
    """The address cannot become this user's alias; the message says why, for the page."""


def alias_verification_url(*, alias: EmailAlias) -> str:
    token = email_token_make(kind=_KIND, pk=alias.pk, email=alias.email)
    return settings.BASE_URL + reverse("dashboards:alias_verify", kwargs={"token": token})


@transaction.atomic
def alias_add(*, user: User, email: str) -> EmailAlias:
    """A pending alias of ``user`` with a link mailed to ``email``. Adding one's own pending
    address again re-sends the link, within the limits of ``accounts.mail_limits``."""
    email = email.strip().lower()
    try:
        forms.EmailField(max_length=EmailAlias._meta.get_field("email").max_length).clean(email)
    except forms.ValidationError:
        raise AliasRefused("That is not an email address.") from None
    if User.objects.filter(email__iexact=email).exists():
        raise AliasRefused("That address is already someone's.")
    existing = EmailAlias.objects.select_for_update().filter(email=email).first()
    if existing is not None and existing.verified_at is not None:
        raise AliasRefused("That address is already someone's.")
    # Counted before anything changes: a refused mail leaves someone else's pending claim (and
    # the link already mailed for it) alone.
    try:
        verification_mail_limit_hit(email=email, account_id=user.pk, alias=True)
    except MailLimited as limited:
        raise AliasRefused(
            f"A link went to {email} a moment ago, or too many links went out today: "
            f"you can ask for another in {limited.wait_text()}."
        ) from None
    if existing is not None and existing.user_id == user.pk:
        alias = existing
    else:
        if existing is not None:
            # Someone else's unconfirmed claim: it proved nothing, so it does not block this one.
            existing.delete()
        alias = EmailAlias.objects.create(user=user, email=email)
    alias.verification_sent_at = timezone.now()
    alias.save(update_fields=["verification_sent_at"])
    verification_mail_send(email=email, url=alias_verification_url(alias=alias), account=user, alias=True)
    return alias


def alias_for_token(*, token: str) -> EmailAlias | None:
    """The alias a valid link names, while it still exists with that address."""
    found = email_token_read(token=token, kind=_KIND)
    if found is None:
        return None
    pk, email = found
    return EmailAlias.objects.filter(pk=pk, email=email).select_related("user").first()


@transaction.atomic
def alias_verify(*, alias: EmailAlias) -> EmailAlias:
    if alias.verified_at is None:
        alias.verified_at = timezone.now()
        alias.save(update_fields=["verified_at"])
    return alias


@require_http_methods(["GET", "POST"])
def alias_verify_view(request: HttpRequest, token: str) -> HttpResponse:
    """No login needed: the link proves the mailbox, and the mailbox's owner may have no account."""
    alias = alias_for_token(token=token)
    if alias is None:
        return render(request, "dashboards/alias_verify.html", {"alias": None}, status=400)
    if request.method == "POST":
        alias = alias_verify(alias=alias)
    return render(request, "dashboards/alias_verify.html", {"alias": alias})
