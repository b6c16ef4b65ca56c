"""Commit-email aliases on the alerts page: added unverified, confirmed through the link mailed
to the address, only then used to assign issues; claims, removal and dead links."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.models import Membership
from accounts.verification import user_email_mark_verified
from processing.digest import events_digest
from processing.followup import issues_followup
from processing.models import EmailAlias, Issue
from processing.releases import release_store
from tests.accounts.conftest import clock_advance
from tests.factories import user_create
from tests.processing.helpers import envelope
from tests.processing.test_suspects_alerts import crash

pytestmark = pytest.mark.django_db
SHA = "f6" * 20


@pytest.fixture(autouse=True)
def base_url(settings):
    settings.BASE_URL = "https://errors.example.com"
    cache.clear()  # mail limits are counted in the cache


def _alias_path(body: str) -> str:
    match = re.search(r"https://errors\.example\.com(/verify-alias/[^\s/]+/)", body)
    assert match, body
    return match.group(1)


def _add(member, capture, email: str):
    with capture(execute=True):
        return member.client.post(member.url("alert_settings"), {"section": "alias", "email": email}, follow=True)


def _issue_for_commit_by(member, author: str) -> Issue:
    now = timezone.now()
    release_store(
        app=member.app, version="v1", environment="production", deployed_at=now,
        commits=[{"sha": SHA, "author_name": "Me", "author_email": author, "message": "Add discounts",
                  "timestamp": (now - timedelta(hours=1)).isoformat(),
                  "files": [{"path": "orders/views.py", "status": "modified", "hunks": [[40, 3, 41, 3]]}]}],
    )  # fmt: skip
    result = events_digest(envelopes=[envelope(member.app, crash("checkout", 42, release="v1"))])
    issues_followup(issue_ids=sorted(result.issue_ids))
    [issue_id] = result.issue_ids
    return Issue.objects.get(pk=issue_id)


def test_an_alias_is_used_only_after_its_link_is_confirmed(member, mailoutbox, django_capture_on_commit_callbacks):
    page = _add(member, django_capture_on_commit_callbacks, "Me@Laptop.local")
    assert "We sent a link to me@laptop.local" in page.text
    assert re.search(r"<code>me@laptop.local</code> <span class=\"muted\">unverified", page.text)
    [mail] = mailoutbox
    assert mail.to == ["me@laptop.local"]
    assert member.user.email in mail.body  # the mailbox's owner sees which account asks

    # Not confirmed: the commit is the suspect, and nobody is assigned; the page says why.
    issue = _issue_for_commit_by(member, "me@laptop.local")
    html = member.client.get(member.url("issue_detail", issue.pk)).text
    assert "changed by f6f6f6f" in html
    assert "me@laptop.local matches no verified address or verified alias" in html

    # Opening the link only asks (a mail scanner fetching it confirms nothing), naming the account.
    path = _alias_path(mail.body)
    stranger = Client()
    asked = stranger.get(path)
    assert asked.status_code == 200
    claim = f"The account <strong>{member.user.email}</strong> says it also commits as <code>me@laptop.local</code>"
    assert claim in asked.text
    assert EmailAlias.objects.get().verified_at is None
    assert 'name="csrfmiddlewaretoken"' in asked.text
    confirmed = stranger.post(path)
    assert confirmed.status_code == 200 and "Address confirmed" in confirmed.text
    assert EmailAlias.objects.get().verified_at is not None
    assert "unverified" not in member.client.get(member.url("alert_settings")).text

    # The next issue from that address is the member's.
    second = events_digest(envelopes=[envelope(member.app, crash("checkout_again", 42, release="v1"))])
    issues_followup(issue_ids=sorted(second.issue_ids))
    [issue_id] = second.issue_ids
    html = member.client.get(member.url("issue_detail", issue_id)).text
    assert f"<strong>{member.user.email}</strong> (automatically)" in html


def test_an_unconfirmed_claim_does_not_block_the_owner_of_the_address(
    member, mailoutbox, django_capture_on_commit_callbacks
):
    # Mallory, a fellow member, claims Bea's laptop address first; Bea claims it too.
    mallory = member
    _add(mallory, django_capture_on_commit_callbacks, "bea@laptop.local")
    bea = user_create(email="bea@example.com")
    Membership.objects.create(organization=member.organization, user=bea)
    bea_client = Client()
    bea_client.force_login(bea)
    with django_capture_on_commit_callbacks(execute=True):
        response = bea_client.post(member.url("alert_settings"), {"section": "alias", "email": "bea@laptop.local"})
    assert response.status_code == 302
    assert EmailAlias.objects.get().user == bea
    mallorys_link, beas_link = (_alias_path(mail.body) for mail in mailoutbox)
    assert Client().get(mallorys_link).status_code == 400  # died with Mallory's claim
    assert Client().post(mallorys_link).status_code == 400
    assert Client().post(beas_link).status_code == 200
    # Confirmed, it is Bea's for good.
    page = _add(mallory, django_capture_on_commit_callbacks, "bea@laptop.local")
    assert page.status_code == 400 and "already someone" in page.text
    assert EmailAlias.objects.get().user == bea and len(mailoutbox) == 2


def test_adding_ones_own_pending_alias_again_resends_at_most_once_a_minute(
    member, mailoutbox, django_capture_on_commit_callbacks, monkeypatch
):
    _add(member, django_capture_on_commit_callbacks, "me@laptop.local")
    again = _add(member, django_capture_on_commit_callbacks, "me@laptop.local")
    assert again.status_code == 400 and "you can ask for another in 1 minute" in again.text
    assert len(mailoutbox) == 1
    clock_advance(monkeypatch, 2 * 60)
    _add(member, django_capture_on_commit_callbacks, "me@laptop.local")
    assert len(mailoutbox) == 2 and EmailAlias.objects.count() == 1


@pytest.mark.parametrize("address", ["not-an-address", "x" * 250 + "@a.io", "a@b.io\nBcc: c@d.io"])
def test_bad_addresses_are_refused(member, mailoutbox, django_capture_on_commit_callbacks, address):
    page = _add(member, django_capture_on_commit_callbacks, address)
    assert page.status_code == 400 and "not an email address" in page.text
    assert not EmailAlias.objects.exists() and not mailoutbox


def test_a_members_address_cannot_be_an_alias_verified_or_not(member, mailoutbox, django_capture_on_commit_callbacks):
    other = user_create(email="other@example.com")
    page = _add(member, django_capture_on_commit_callbacks, "Other@Example.com")
    assert page.status_code == 400 and "already someone" in page.text
    user_email_mark_verified(user=other)
    assert _add(member, django_capture_on_commit_callbacks, "other@example.com").status_code == 400
    assert not mailoutbox


def test_removing_a_pending_alias_kills_its_link(member, mailoutbox, django_capture_on_commit_callbacks):
    _add(member, django_capture_on_commit_callbacks, "me@laptop.local")
    alias = EmailAlias.objects.get()
    member.client.post(member.url("alert_settings"), {"section": "alias-remove", "alias": alias.pk})
    assert not EmailAlias.objects.exists()
    dead = Client().get(_alias_path(mailoutbox[0].body))
    assert dead.status_code == 400 and "does not work" in dead.text


def test_the_confirmation_page_escapes_the_address(db, django_capture_on_commit_callbacks, client):
    from dashboards.aliases import alias_add, alias_verification_url

    user = user_create(email="x@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        alias = alias_add(user=user, email="a&b@example.com")
    page = client.get(alias_verification_url(alias=alias).removeprefix("https://errors.example.com"))
    assert "a&amp;b@example.com" in page.text and "a&b@example.com" not in page.text
