"""Mail a user makes us send to addresses they type is limited per recipient, per organization and
per sender: over a limit nothing leaves, and the person sees when they can try again."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.test import Client

from accounts import mail_limits
from accounts.models import Invite, Membership
from accounts.throttle import Limit
from tests.accounts.conftest import clock_advance
from tests.factories import org_app_create, user_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_limits(settings):
    settings.BASE_URL = "https://errors.example.com"
    cache.clear()  # mail limits are counted in the cache


def _owner_of(name: str):
    owner, organization, _ = org_app_create(org_name=name)
    client = Client()
    client.force_login(owner)
    return client, organization


def _invite(client, organization, email: str, capture):
    with capture(execute=True):
        return client.post(f"/orgs/{organization.public_id}/invites/", {"email": email}, follow=True)


def test_five_invites_to_one_address_send_one_mail(mailoutbox, django_capture_on_commit_callbacks):
    client, organization = _owner_of("Acme")
    pages = [_invite(client, organization, "c@corp.test", django_capture_on_commit_callbacks) for _ in range(5)]
    assert len(mailoutbox) == 1
    assert Invite.objects.count() == 1
    assert "Invite sent to c@corp.test" in pages[0].text
    for page in pages[1:]:
        assert "No invite was sent" in page.text
        assert re.search(r"try again in (10|[1-9]) minutes?", page.text)
    # The link that was mailed still works: a refused re-send changes nothing.
    link = mailoutbox[0].body.split("https://errors.example.com", 1)[1].split()[0]
    assert Client().get(link).status_code == 200


def test_three_invite_mails_to_an_address_per_day(mailoutbox, django_capture_on_commit_callbacks, monkeypatch):
    # The day's window is fixed (midnight UTC): start at one, so "try again in N hours" does not
    # depend on the time of day the test runs.
    import accounts.throttle

    monkeypatch.setattr(accounts.throttle, "time", SimpleNamespace(time=lambda: 20_834 * 86_400.0))
    client, organization = _owner_of("Acme")
    for _ in range(3):
        assert "Invite sent" in _invite(client, organization, "c@corp.test", django_capture_on_commit_callbacks).text
        clock_advance(monkeypatch, 11 * 60)
    page = _invite(client, organization, "c@corp.test", django_capture_on_commit_callbacks)
    assert "No invite was sent" in page.text and "hours" in page.text
    assert len(mailoutbox) == 3 and Invite.objects.count() == 1


def test_fifty_invites_per_organization_per_day(mailoutbox, django_capture_on_commit_callbacks):
    client, organization = _owner_of("Acme")
    for n in range(50):
        _invite(client, organization, f"person{n}@corp.test", django_capture_on_commit_callbacks)
    assert len(mailoutbox) == 50
    page = _invite(client, organization, "one.more@corp.test", django_capture_on_commit_callbacks)
    assert "No invite was sent" in page.text and "try again in" in page.text
    assert len(mailoutbox) == 50
    assert not Invite.objects.filter(email="one.more@corp.test").exists()


def test_many_organizations_cannot_flood_one_address(mailoutbox, django_capture_on_commit_callbacks):
    for n in range(12):
        client, organization = _owner_of(f"Spam {n}")
        _invite(client, organization, "victim@corp.test", django_capture_on_commit_callbacks)
    assert len(mailoutbox) == 10


def test_one_person_cannot_spray_invites_from_many_organizations(
    mailoutbox, django_capture_on_commit_callbacks, monkeypatch
):
    # Organizations cost nothing, so one person's invites are counted across all of theirs (the
    # limit is lowered here from its 100 a day to keep the test short).
    monkeypatch.setattr(mail_limits, "INVITE_PER_SENDER", (Limit(5, mail_limits.DAY),))
    owner = user_create()
    client = Client()
    client.force_login(owner)
    for n in range(3):
        organization = org_app_create(owner=owner, org_name=f"Spam {n}")[1]
        for m in range(3):
            page = _invite(client, organization, f"p{n}-{m}@corp.test", django_capture_on_commit_callbacks)
    assert len(mailoutbox) == 5
    assert "No invite was sent" in page.text


def test_alias_links_are_limited_per_person(mailoutbox, django_capture_on_commit_callbacks):
    _, organization, app = org_app_create()
    owner = Membership.objects.get(organization=organization).user
    client = Client()
    client.force_login(owner)
    url = f"/orgs/{organization.public_id}/apps/{app.public_id}/alerts/"
    for n in range(21):
        with django_capture_on_commit_callbacks(execute=True):
            page = client.post(url, {"section": "alias", "email": f"me{n}@laptop.local"}, follow=True)
    assert len(mailoutbox) == 20
    assert "you can ask for another in" in page.text


def test_the_verification_link_is_resent_at_most_once_a_minute(mailoutbox, django_capture_on_commit_callbacks):
    user = user_create(email="ada@example.com")
    client = Client()
    client.force_login(user)
    for _ in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            page = client.post("/verify-email/resend/", follow=True)
    assert len(mailoutbox) == 1
    assert "try again in 1 minute" in page.text
