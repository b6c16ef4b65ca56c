"""The organization page, inviting teammates and accepting an invite; who may see and do what."""

from __future__ import annotations

import re

import pytest

from accounts.models import Invite, Membership, User
from tests.factories import user_create

from .conftest import PASSWORD, clock_advance, invite_make

pytestmark = pytest.mark.django_db


def _invite_path(text: str) -> str:
    match = re.search(r"https?://[^/\s\"]+(/invites/[A-Za-z0-9_\-]+/)", text)
    assert match, text
    return match.group(1)


def test_org_page_lists_apps_and_members(client, owner_org_app, member):
    owner, organization, app = owner_org_app
    client.force_login(owner)
    page = client.get(f"/orgs/{organization.public_id}/")
    assert page.status_code == 200
    assert f'href="/orgs/{organization.public_id}/apps/{app.public_id}/"' in page.text  # the app's dashboard
    assert f'href="/orgs/{organization.public_id}/apps/{app.public_id}/settings/"' in page.text
    assert owner.email in page.text
    assert member.email in page.text


def test_owner_invites_by_email_and_the_link_is_in_the_mail_only(
    client, owner_org_app, mailoutbox, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.BASE_URL = "https://errors.example.com"
    owner, organization, _ = owner_org_app
    client.force_login(owner)
    # The mail leaves after the invite is committed.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/orgs/{organization.public_id}/invites/", {"email": "New.Hire@example.com"})
    assert response["Location"] == f"/orgs/{organization.public_id}/"

    invite = Invite.objects.get()
    assert invite.email == "new.hire@example.com"
    assert invite.invited_by == owner
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["new.hire@example.com"]
    assert "Acme" in mailoutbox[0].subject
    link = "https://errors.example.com" + _invite_path(mailoutbox[0].body)

    # The owner sees who is invited and until when, never the link (it would prove no mailbox).
    page = client.get(response["Location"])
    assert "Invite sent to new.hire@example.com" in page.text
    assert "new.hire@example.com" in page.text
    assert link.removeprefix("https://errors.example.com") not in page.text

    # Inviting the same address again (after the 10-minute limit) mails a new link for the same
    # invite instead of piling up invites; the earlier link stops working.
    clock_advance(monkeypatch, 11 * 60)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/orgs/{organization.public_id}/invites/", {"email": "new.hire@example.com"})
    assert Invite.objects.count() == 1
    assert len(mailoutbox) == 2
    new_link = "https://errors.example.com" + _invite_path(mailoutbox[1].body)
    assert new_link != link
    client.logout()
    assert client.get(link.removeprefix("https://errors.example.com")).status_code == 404
    assert client.get(new_link.removeprefix("https://errors.example.com")).status_code == 200


def test_inviting_a_member_or_garbage_is_refused_on_the_page(client, owner_org_app, member, mailoutbox):
    owner, organization, _ = owner_org_app
    client.force_login(owner)
    page = client.post(f"/orgs/{organization.public_id}/invites/", {"email": member.email.upper()})
    assert page.status_code == 200
    assert "is a member of Acme already" in page.text
    page = client.post(f"/orgs/{organization.public_id}/invites/", {"email": "not an email"})
    assert "valid email" in page.text
    assert Invite.objects.count() == 0
    assert mailoutbox == []


def test_member_who_is_not_owner_cannot_invite_or_see_links(client, owner_org_app, member, mailoutbox):
    owner, organization, _ = owner_org_app
    invite_make(organization, "pending@example.com", invited_by=owner)
    client.force_login(member)
    page = client.get(f"/orgs/{organization.public_id}/")
    assert page.status_code == 200
    assert "/invites/" not in page.text
    assert "pending@example.com" not in page.text
    assert "Invite a teammate" not in page.text

    response = client.post(f"/orgs/{organization.public_id}/invites/", {"email": "friend@example.com"})
    assert response.status_code == 403
    assert Invite.objects.filter(email="friend@example.com").count() == 0
    assert mailoutbox == []


def test_non_member_gets_404_on_another_organization(client, owner_org_app, outsider, mailoutbox):
    _, organization, _ = owner_org_app
    client.force_login(outsider)
    assert client.get(f"/orgs/{organization.public_id}/").status_code == 404
    assert client.post(f"/orgs/{organization.public_id}/invites/", {"email": "x@example.com"}).status_code == 404
    assert client.get("/orgs/0000000000000000/").status_code == 404
    assert Invite.objects.count() == 0


def test_anonymous_is_sent_to_login(client, owner_org_app):
    _, organization, _ = owner_org_app
    response = client.get(f"/orgs/{organization.public_id}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_new_person_signs_up_through_the_link_and_joins(
    client, owner_org_app, mailoutbox, django_capture_on_commit_callbacks
):
    owner, organization, _ = owner_org_app
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/orgs/{organization.public_id}/invites/", {"email": "newbie@example.com"})
    path = _invite_path(mailoutbox[0].body)
    client.logout()

    page = client.get(path)
    assert page.status_code == 200
    assert "Join Acme" in page.text
    assert 'value="newbie@example.com"' in page.text  # prefilled
    assert 'name="organization_name"' not in page.text  # they join Acme, they do not create one

    response = client.post(path, {"email": "newbie@example.com", "password": "a long passphrase 42"})
    assert response["Location"] == f"/orgs/{organization.public_id}/"
    newbie = User.objects.get(email="newbie@example.com")
    assert Membership.objects.get(organization=organization, user=newbie).role == Membership.Role.MEMBER
    assert Invite.objects.get().accepted_at is not None
    page = client.get(response["Location"])
    assert "You joined Acme" in page.text
    assert page.wsgi_request.user == newbie

    # The link works once, and says so.
    client.logout()
    used = client.get(path)
    assert used.status_code == 410
    assert "This invite has been used already" in used.text


def test_invite_signup_with_bad_password_keeps_the_form(client, owner_org_app):
    owner, organization, _ = owner_org_app
    _, token = invite_make(organization, "x@example.com", invited_by=owner)
    page = client.post(f"/invites/{token}/", {"email": "x@example.com", "password": "short"})
    assert page.status_code == 200
    assert "too short" in page.text
    assert not User.objects.filter(email="x@example.com").exists()


def test_existing_user_logs_in_through_the_link_and_joins(client, owner_org_app):
    owner, organization, _ = owner_org_app
    _, token = invite_make(organization, "old.hand@example.com", invited_by=owner)
    old_hand = user_create(email="old.hand@example.com")
    path = f"/invites/{token}/"

    page = client.get(path)
    assert f'href="/login/?next={path}"' in page.text
    response = client.post("/login/", {"username": "old.hand@example.com", "password": PASSWORD, "next": path})
    assert response["Location"] == path

    page = client.get(path)
    assert "Join Acme" in page.text
    assert Membership.objects.filter(organization=organization, user=old_hand).count() == 0  # GET does not join
    response = client.post(path)
    assert response["Location"] == f"/orgs/{organization.public_id}/"
    assert Membership.objects.get(organization=organization, user=old_hand).role == Membership.Role.MEMBER
    assert client.get(response["Location"]).status_code == 200


def test_unknown_invite_token_is_404(client, db):
    page = client.get("/invites/deadbeef/")
    assert page.status_code == 404
    assert "This invite link is not valid" in page.text


def test_names_are_escaped(client, db):
    client.post(
        "/signup/",
        {"email": "eve@example.com", "password": "a long passphrase 42", "organization_name": "<script>alert(1)</script>"},
    )
    page = client.get("/", follow=True)
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
