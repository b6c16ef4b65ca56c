"""Sign-up, log in, log out, home and password reset, as a person sees them in the browser."""

from __future__ import annotations

import re

import pytest

from accounts.models import Membership, Organization, User
from tests.factories import org_app_create, user_create

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_signup_creates_owned_organization_and_logs_in(client):
    response = client.post(
        "/signup/",
        {"email": "Ada@Example.com", "password": "a long passphrase 42", "organization_name": "Analytical Engines"},
    )
    user = User.objects.get()
    organization = Organization.objects.get()
    assert user.email == "ada@example.com"
    assert Membership.objects.get(user=user, organization=organization).role == Membership.Role.OWNER
    assert response.status_code == 302
    assert response["Location"] == f"/orgs/{organization.public_id}/"

    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "Analytical Engines" in page.text
    assert "ada@example.com" in page.text  # logged in: the top bar shows the account
    assert "New app" in page.text


def test_signup_page_renders_with_the_three_fields(client):
    page = client.get("/signup/")
    assert page.status_code == 200
    for name in ("email", "password", "organization_name"):
        assert f'name="{name}"' in page.text


@pytest.mark.parametrize(
    "data, message",
    [
        ({"email": "taken@example.com", "password": "a long passphrase 42", "organization_name": "X"}, "exists already"),
        ({"email": "TAKEN@example.com", "password": "a long passphrase 42", "organization_name": "X"}, "exists already"),
        ({"email": "new@example.com", "password": "short", "organization_name": "X"}, "too short"),
        ({"email": "new@example.com", "password": "password123", "organization_name": "X"}, "too common"),
        ({"email": "new@example.com", "password": "a long passphrase 42", "organization_name": "  "}, "organization"),
        ({"email": "not-an-email", "password": "a long passphrase 42", "organization_name": "X"}, "valid email"),
    ],
)
def test_signup_refuses_bad_input_and_says_why(client, data, message):
    user_create(email="taken@example.com")
    response = client.post("/signup/", data)
    assert response.status_code == 200
    assert message in response.text.lower()
    assert User.objects.count() == 1
    assert Organization.objects.count() == 0


def test_login_with_email_in_any_case_then_logout(client):
    user_create(email="grace@example.com")
    response = client.post("/login/", {"username": "Grace@Example.COM", "password": PASSWORD})
    assert response.status_code == 302
    home = client.get("/")
    assert home.status_code == 200  # no organization yet: the list, with a form to create one
    assert home.wsgi_request.user.email == "grace@example.com"
    assert "New organization" in home.text

    assert client.get("/logout/").status_code == 405  # logging out is a POST (a link cannot log you out)
    response = client.post("/logout/")
    assert response.status_code == 302
    assert client.get("/")["Location"] == "/login/"


def test_login_with_wrong_password_says_so(client):
    user_create(email="grace@example.com")
    response = client.post("/login/", {"username": "grace@example.com", "password": "wrong"})
    assert response.status_code == 200
    assert response.text.count("That email and password do not match an account") == 1
    assert not response.wsgi_request.user.is_authenticated


def test_home_anonymous_goes_to_login(client):
    assert client.get("/")["Location"] == "/login/"
    page = client.get("/login/")
    assert page.status_code == 200
    assert "Forgot your password?" in page.text


def test_home_with_one_organization_goes_straight_to_it(client):
    owner, organization, _ = org_app_create(org_name="Solo")
    client.force_login(owner)
    assert client.get("/")["Location"] == f"/orgs/{organization.public_id}/"


def test_home_with_several_organizations_lists_them(client):
    owner, first, _ = org_app_create(org_name="First Org")
    _, second, _ = org_app_create(owner=owner, org_name="Second Org")
    org_app_create(org_name="Not Mine")
    client.force_login(owner)
    page = client.get("/")
    assert page.status_code == 200
    assert f'href="/orgs/{first.public_id}/"' in page.text
    assert f'href="/orgs/{second.public_id}/"' in page.text
    assert "Not Mine" not in page.text


def test_create_another_organization(client):
    owner, _, _ = org_app_create(org_name="First Org")
    client.force_login(owner)
    response = client.post("/orgs/new/", {"name": "Side Project"})
    organization = Organization.objects.get(name="Side Project")
    assert response["Location"] == f"/orgs/{organization.public_id}/"
    assert Membership.objects.get(organization=organization, user=owner).role == Membership.Role.OWNER


def test_password_reset_by_email_with_base_url_link(client, mailoutbox, settings):
    settings.BASE_URL = "https://errors.example.com"
    user_create(email="linus@example.com")
    response = client.post("/password-reset/", {"email": "Linus@example.com"}, HTTP_HOST="localhost")
    assert response["Location"] == "/password-reset/sent/"
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["linus@example.com"]
    match = re.search(r"https://errors\.example\.com(/password-reset/\S+/\S+/)", mail.body)
    assert match, mail.body

    # Django swaps the token in the URL for a session value, then asks for the new password.
    set_password_url = client.get(match.group(1))["Location"]
    page = client.get(set_password_url)
    assert "Set a new password" in page.text
    response = client.post(set_password_url, {"new_password1": "a brand new phrase", "new_password2": "a brand new phrase"})
    assert response["Location"] == "/password-reset/done/"
    assert "Your password is set" in client.get("/password-reset/done/").text

    assert client.login(username="linus@example.com", password="a brand new phrase")
    client.logout()
    assert not client.login(username="linus@example.com", password=PASSWORD)
    # The link worked once.
    assert "does not work" in client.get(match.group(1), follow=True).text


def test_password_reset_for_unknown_email_sends_nothing_and_does_not_tell(client, mailoutbox):
    response = client.post("/password-reset/", {"email": "nobody@example.com"})
    assert response["Location"] == "/password-reset/sent/"
    assert mailoutbox == []


def test_pages_need_no_network(client):
    # Self-hosted and often offline: no fonts, scripts or styles from another host.
    for url in ("/login/", "/signup/", "/password-reset/"):
        page = client.get(url)
        assert page.status_code == 200
        assert '<link rel="stylesheet" href="/static/opbeat.css">' in page.text
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), url
