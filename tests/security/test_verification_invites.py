"""An address counts as verified only when its owner followed a link mailed to it: an inviter
who invites someone else's address must not be able to claim that address (and the issues of
its commits) by signing up through their own invite."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.models import Invite, Membership, User
from accounts.verification import user_email_mark_verified
from processing.models import IssueFollowup
from processing.releases import release_store
from tests.factories import org_app_create, user_create
from tests.processing.test_suspects_alerts import crash, digest_followup

pytestmark = pytest.mark.django_db
PASSWORD = "a long passphrase 42"
SHA = "c0" * 20
# An invite's own link (/invites/<token>/), not an organization's invite pages (/orgs/<id>/invites/...).
INVITE_LINK = re.compile(r"(?:^|[\s\"'=>]|https?://[^/\s\"']+)(/invites/[A-Za-z0-9_\-]+/)")


@pytest.fixture(autouse=True)
def fresh_limits(settings):
    settings.BASE_URL = "https://errors.example.com"
    cache.clear()  # mail limits are counted in the cache


def _login(email: str) -> Client:
    client = Client()
    client.force_login(User.objects.get(email=email))
    return client


def _links_to(mailoutbox, address: str) -> list[str]:
    return [path for mail in mailoutbox if address in mail.to for path in INVITE_LINK.findall(mail.body)]


def test_inviting_someone_elses_address_does_not_let_the_inviter_claim_its_commits(
    mailoutbox, django_capture_on_commit_callbacks
):
    # The victim organization; c@corp.test is a real colleague who commits there (not signed up).
    victim_owner, victim_org, app = org_app_create(org_name="Victim Corp", app_name="shop")
    user_email_mark_verified(user=victim_owner)
    release_store(
        app=app, version="v2", environment="production", deployed_at=timezone.now(),
        commits=[{"sha": SHA, "author_name": "C", "author_email": "c@corp.test", "message": "Add discounts",
                  "timestamp": (timezone.now() - timedelta(hours=1)).isoformat(),
                  "files": [{"path": "orders/views.py", "status": "modified", "hunks": [[40, 3, 41, 3]]}]}],
    )  # fmt: skip

    # Mallory owns a second organization and invites c@corp.test to it.
    mallory = Client()
    mallory.post("/signup/", {"email": "mallory@evil.test", "password": PASSWORD, "organization_name": "Evil"})
    evil_org = Membership.objects.get(user__email="mallory@evil.test").organization
    with django_capture_on_commit_callbacks(execute=True):
        sent = mallory.post(f"/orgs/{evil_org.public_id}/invites/", {"email": "c@corp.test"}, follow=True)
    seen_by_inviter = sent.text + mallory.get(f"/orgs/{evil_org.public_id}/").text
    [mailed_link] = _links_to(mailoutbox, "c@corp.test")
    # The link in c's mailbox is not something the inviter can see.
    assert mailed_link not in seen_by_inviter
    visible_links = INVITE_LINK.findall(seen_by_inviter)

    # Mallory signs up as c@corp.test, through any invite link she can see (else directly).
    attacker = Client()
    if visible_links:
        attacker.post(visible_links[0], {"email": "c@corp.test", "password": PASSWORD})
    else:
        attacker.post("/signup/", {"email": "c@corp.test", "password": PASSWORD, "organization_name": "Evil 2"})
    fake_c = User.objects.get(email="c@corp.test")
    assert fake_c.email_verified_at is None

    # The victim's owner invites Mallory (a contractor, by her own address); she joins with the fake account.
    with django_capture_on_commit_callbacks(execute=True):
        _login(victim_owner.email).post(f"/orgs/{victim_org.public_id}/invites/", {"email": "mallory@evil.test"})
    [victim_link] = _links_to(mailoutbox, "mallory@evil.test")
    attacker.force_login(fake_c)
    assert attacker.post(victim_link).status_code == 302
    assert Membership.objects.filter(organization=victim_org, user=fake_c).exists()

    # An issue whose suspect commit is by c@corp.test is not handed to the fake account.
    issue = digest_followup(app, crash("checkout", 42))
    followup = IssueFollowup.objects.get(issue=issue)
    assert followup.suspect_commit.sha == SHA
    assert followup.assignee_id != fake_c.pk
    page = attacker.get(f"/orgs/{victim_org.public_id}/apps/{app.public_id}/issues/{issue.pk}/")
    assert page.status_code == 200
    assert "c@corp.test matches no verified address" in page.text


def test_the_real_invitee_is_verified_by_the_mailed_link(client, mailoutbox, django_capture_on_commit_callbacks):
    owner, organization, _ = org_app_create(org_name="Acme")
    with django_capture_on_commit_callbacks(execute=True):
        _login(owner.email).post(f"/orgs/{organization.public_id}/invites/", {"email": "c@corp.test"})
    [link] = _links_to(mailoutbox, "c@corp.test")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(link, {"email": "c@corp.test", "password": PASSWORD})
    assert response.status_code == 302
    assert User.objects.get(email="c@corp.test").email_verified_at is not None
    assert len(mailoutbox) == 1  # no separate verification mail: the invite mail proved the mailbox


def test_the_invite_token_is_stored_only_as_its_hash(mailoutbox, django_capture_on_commit_callbacks):
    owner, organization, _ = org_app_create(org_name="Acme")
    with django_capture_on_commit_callbacks(execute=True):
        _login(owner.email).post(f"/orgs/{organization.public_id}/invites/", {"email": "c@corp.test"})
    [link] = _links_to(mailoutbox, "c@corp.test")
    token = link.split("/")[2]
    stored = [str(value) for row in Invite.objects.values_list() for value in row]
    assert not any(token in value for value in stored)
    assert hashlib.sha256(token.encode()).hexdigest() in stored


def test_an_invite_made_before_links_were_mail_only_joins_but_does_not_verify(client, mailoutbox):
    # Its link was shown to the inviter on the organization page, so it proves no mailbox.
    owner, organization, _ = org_app_create(org_name="Acme")
    token = "legacy-token-shown-to-the-owner"
    Invite.objects.create(
        organization=organization, email="c@corp.test", invited_by=owner,
        token_hash=hashlib.sha256(token.encode()).hexdigest(), verifies_email=False,
        expires_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    response = client.post(f"/invites/{token}/", {"email": "c@corp.test", "password": PASSWORD})
    assert response.status_code == 302
    user = User.objects.get(email="c@corp.test")
    assert Membership.objects.filter(organization=organization, user=user).exists()
    assert user.email_verified_at is None


def test_a_logged_in_account_with_the_address_is_verified_only_by_the_mailed_link(
    mailoutbox, django_capture_on_commit_callbacks
):
    owner, organization, _ = org_app_create(org_name="Acme")
    c = user_create(email="c@corp.test")
    with django_capture_on_commit_callbacks(execute=True):
        _login(owner.email).post(f"/orgs/{organization.public_id}/invites/", {"email": "c@corp.test"})
    [link] = _links_to(mailoutbox, "c@corp.test")
    assert _login(c.email).post(link).status_code == 302
    assert User.objects.get(pk=c.pk).email_verified_at is not None
