"""Verifying a user's address: the link mailed at sign-up, the banner and its resend button,
invites mailed to the address, and links that must not work. Through the test client, reading
the mail Django sent (pytest-django's ``mailoutbox``)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from accounts import verification
from accounts.models import User
from tests.factories import user_create

from .conftest import invite_make

pytestmark = pytest.mark.django_db
BANNER = "Verify your email address"


def _verify_path(body: str) -> str:
    match = re.search(r"https://errors\.example\.com(/verify-email/[^\s/]+/)", body)
    assert match, body
    return match.group(1)


@pytest.fixture(autouse=True)
def base_url(settings):
    settings.BASE_URL = "https://errors.example.com"


def _signup(client, capture, email="ada@example.com"):
    with capture(execute=True):
        response = client.post(
            "/signup/", {"email": email, "password": "a long passphrase 42", "organization_name": "Engines"}
        )
    assert response.status_code == 302
    return response


def test_signup_mails_a_link_that_verifies_the_address(client, mailoutbox, django_capture_on_commit_callbacks):
    response = _signup(client, django_capture_on_commit_callbacks)
    [mail] = mailoutbox
    assert mail.to == ["ada@example.com"]
    assert "Verify" in mail.subject
    # Logged in, unverified: every page says so and offers a new link.
    page = client.get(response["Location"])
    assert BANNER in page.text and "ada@example.com" in page.text
    assert 'action="/verify-email/resend/"' in page.text
    assert User.objects.get().email_verified_at is None

    path = _verify_path(mail.body)
    verified = client.get(path)
    assert verified.status_code == 200
    assert "Email verified" in verified.text
    assert BANNER not in verified.text
    assert User.objects.get().email_verified_at is not None
    assert BANNER not in client.get(response["Location"]).text
    # Following it again changes nothing and does not fail.
    when = User.objects.get().email_verified_at
    assert client.get(path).status_code == 200
    assert User.objects.get().email_verified_at == when


def test_the_link_works_without_being_logged_in(client, mailoutbox, django_capture_on_commit_callbacks):
    _signup(client, django_capture_on_commit_callbacks)
    client.post("/logout/")
    page = client.get(_verify_path(mailoutbox[0].body))
    assert page.status_code == 200 and "Email verified" in page.text and 'href="/login/"' in page.text
    assert User.objects.get().email_verified_at is not None


def test_tampered_expired_and_stale_links_verify_nothing(
    client, mailoutbox, django_capture_on_commit_callbacks, monkeypatch
):
    _signup(client, django_capture_on_commit_callbacks)
    path = _verify_path(mailoutbox[0].body)
    token = path.split("/")[2]
    tampered = client.get(f"/verify-email/{token[:-2]}xx/")
    assert tampered.status_code == 400 and "does not work" in tampered.text

    # A token for another purpose (an alias link) is not a user's.
    user = User.objects.get()
    other_kind = verification.email_token_make(kind="alias", pk=user.pk, email=user.email)
    assert client.get(f"/verify-email/{other_kind}/").status_code == 400

    # Expired: the same link, read with a maximum age it has already passed.
    monkeypatch.setattr(verification, "TOKEN_MAX_AGE", timedelta(seconds=-1))
    assert client.get(path).status_code == 400
    monkeypatch.undo()

    # Stale: the account's address is not the one the link was sent to any more.
    User.objects.filter(pk=user.pk).update(email="ada@elsewhere.example")
    assert client.get(path).status_code == 400
    assert User.objects.get().email_verified_at is None


def test_resend_mails_a_new_link_at_most_once_a_minute(client, mailoutbox, django_capture_on_commit_callbacks):
    user = user_create(email="old@example.com")  # from before verification existed: no link sent yet
    client.force_login(user)
    page = client.get("/")
    assert BANNER in page.text
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/verify-email/resend/", {"next": "/orgs/new/"}, follow=True)
    assert response.redirect_chain[-1][0] == "/orgs/new/"
    assert "We sent a new link to old@example.com" in response.text
    assert [mail.to for mail in mailoutbox] == [["old@example.com"]]

    with django_capture_on_commit_callbacks(execute=True):
        again = client.post("/verify-email/resend/", {"next": "https://evil.example/"}, follow=True)
    assert "We cannot send another link yet" in again.text and "try again in 1 minute" in again.text
    assert len(mailoutbox) == 1
    assert again.redirect_chain[0][0] == "/"  # never off-site

    assert client.get(_verify_path(mailoutbox[0].body)).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post("/verify-email/resend/", follow=True)
    assert "verified already" in done.text and len(mailoutbox) == 1


def test_resend_needs_login_and_a_post(client):
    assert client.post("/verify-email/resend/")["Location"].startswith("/login/")
    client.force_login(user_create())
    assert client.get("/verify-email/resend/").status_code == 405


def test_signing_up_through_an_invite_mailed_to_that_address_verifies_it(
    client, owner_org_app, mailoutbox, django_capture_on_commit_callbacks
):
    owner, organization, _ = owner_org_app
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/orgs/{organization.public_id}/invites/", {"email": "bea@example.com"})
    client.post("/logout/")
    [invite_mail] = mailoutbox
    path = re.search(r"https://errors\.example\.com(/invites/[A-Za-z0-9_\-]+/)", invite_mail.body).group(1)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(path, {"email": "bea@example.com", "password": "a long passphrase 42"})
    assert response.status_code == 302
    assert User.objects.get(email="bea@example.com").email_verified_at is not None
    assert len(mailoutbox) == 1  # no verification mail: the invite proved the mailbox
    assert BANNER not in client.get(response["Location"]).text


def test_signing_up_through_an_invite_with_another_address_needs_its_own_link(
    client, owner_org_app, mailoutbox, django_capture_on_commit_callbacks
):
    _, organization, _ = owner_org_app
    _, token = invite_make(organization, "bea@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/invites/{token}/", {"email": "mallory@example.com", "password": "a long passphrase 42"})
    assert response.status_code == 302
    assert User.objects.get(email="mallory@example.com").email_verified_at is None
    [mail] = mailoutbox
    assert mail.to == ["mallory@example.com"] and "/verify-email/" in mail.body
    assert BANNER in client.get(response["Location"]).text


def test_a_logged_in_user_accepting_an_invite_to_their_address_is_verified(client, owner_org_app):
    _, organization, _ = owner_org_app
    bea, mallory = user_create(email="bea@example.com"), user_create(email="mallory@example.com")
    for user in (bea, mallory):
        _, token = invite_make(organization, "bea@example.com")
        client.force_login(user)
        assert client.post(f"/invites/{token}/").status_code == 302
    assert User.objects.get(pk=bea.pk).email_verified_at is not None
    assert User.objects.get(pk=mallory.pk).email_verified_at is None


def test_the_verification_mail_escapes_nothing_and_carries_only_our_link(
    client, mailoutbox, django_capture_on_commit_callbacks
):
    # Plain text: the address appears as typed, and the only link is built from BASE_URL.
    _signup(client, django_capture_on_commit_callbacks, email="o'brien@example.com")
    body = mailoutbox[0].body
    assert "o'brien@example.com" in body and "&#x27;" not in body
    assert re.findall(r"https?://\S+", body) == ["https://errors.example.com" + _verify_path(body)]
