"""Access that can be taken back: invites expire and can be revoked, owners remove members and
change roles, members leave; an organization never loses its last owner; only owners invite.
Every action is scoped to the organization (another organization's ids are 404s, also for POST),
asks on a confirmation page first, and acts only on a POST with a CSRF token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.models import Invite, Membership, User
from accounts.verification import user_email_mark_verified
from processing.models import IssueFollowup
from processing.releases import release_store
from tests.accounts.conftest import invite_make
from tests.factories import org_app_create, user_create
from tests.processing.test_suspects_alerts import crash, digest_followup

pytestmark = pytest.mark.django_db
PASSWORD = "a long passphrase 42"


@pytest.fixture(autouse=True)
def fresh_limits(settings):
    settings.BASE_URL = "https://errors.example.com"
    cache.clear()  # mail limits are counted in the cache


def _client(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def acme():
    """Acme: an owner, a plain member, one app; and an outsider who owns another organization."""
    owner, organization, app = org_app_create(org_name="Acme", app_name="shop")
    member = user_create(email="bea@example.com")
    Membership.objects.create(organization=organization, user=member, role=Membership.Role.MEMBER)
    outsider, other_org, _ = org_app_create(org_name="Other Co")
    return {
        "owner": owner,
        "org": organization,
        "app": app,
        "member": member,
        "outsider": outsider,
        "other_org": other_org,
    }


def _membership(org, user) -> Membership:
    return Membership.objects.get(organization=org, user=user)


def _url(org, *parts) -> str:
    return "/".join([f"/orgs/{org.public_id}", *map(str, parts)]) + "/"


# --- Who may do what ----------------------------------------------------------------------------


def test_a_member_cannot_invite_remove_revoke_or_change_roles(acme, mailoutbox, django_capture_on_commit_callbacks):
    org, owner = acme["org"], acme["owner"]
    invite, _ = invite_make(org, "pending@example.com", invited_by=owner)
    owner_ship = _membership(org, owner)
    bea = _client(acme["member"])

    page = bea.get(_url(org))
    assert page.status_code == 200
    assert "Invite a teammate" not in page.text and "pending@example.com" not in page.text
    assert "/remove/" not in page.text and "/role/" not in page.text

    with django_capture_on_commit_callbacks(execute=True):
        assert bea.post(_url(org, "invites"), {"email": "friend@example.com"}).status_code == 403
    for method in (bea.get, bea.post):
        assert method(_url(org, "members", owner_ship.pk, "remove")).status_code == 403
        assert method(_url(org, "members", owner_ship.pk, "role"), {"role": "member"}).status_code == 403
        assert method(_url(org, "invites", invite.pk, "revoke")).status_code == 403
    assert (
        bea.post(_url(org, "members", _membership(org, acme["member"]).pk, "role"), {"role": "owner"}).status_code
        == 403
    )

    assert _membership(org, owner).role == Membership.Role.OWNER
    assert _membership(org, acme["member"]).role == Membership.Role.MEMBER
    assert Invite.objects.get(pk=invite.pk).revoked_at is None
    assert not Invite.objects.filter(email="friend@example.com").exists()
    assert mailoutbox == []


def test_another_organizations_members_and_invites_are_404_also_for_post(acme):
    org, other_org = acme["org"], acme["other_org"]
    invite, _ = invite_make(org, "pending@example.com", invited_by=acme["owner"])
    bea_ship = _membership(org, acme["member"])
    outsider = _client(acme["outsider"])  # an owner, of Other Co
    for method in (outsider.get, outsider.post):
        # Acme's ids under Acme's URL (not a member) and under the outsider's own organization.
        for base in (org, other_org):
            assert method(_url(base, "members", bea_ship.pk, "remove")).status_code == 404
            assert method(_url(base, "members", bea_ship.pk, "role"), {"role": "owner"}).status_code == 404
            assert method(_url(base, "invites", invite.pk, "revoke")).status_code == 404
        assert method(_url(org, "leave")).status_code == 404
    assert Membership.objects.filter(pk=bea_ship.pk, role=Membership.Role.MEMBER).exists()
    assert Invite.objects.get(pk=invite.pk).revoked_at is None


def test_destructive_actions_need_a_csrf_token(acme):
    org = acme["org"]
    bea_ship = _membership(org, acme["member"])
    owner = _client(acme["owner"], enforce_csrf_checks=True)
    assert owner.post(_url(org, "members", bea_ship.pk, "remove")).status_code == 403
    assert Membership.objects.filter(pk=bea_ship.pk).exists()
    # The confirmation page carries the token and posts to itself.
    page = owner.get(_url(org, "members", bea_ship.pk, "remove"))
    assert 'name="csrfmiddlewaretoken"' in page.text


# --- Removing, roles, leaving ---------------------------------------------------------------------


def test_an_owner_removes_a_member_after_confirming_and_the_member_loses_access(acme):
    org, app, bea = acme["org"], acme["app"], acme["member"]
    bea_client = _client(bea)
    assert bea_client.get(_url(org)).status_code == 200
    owner = _client(acme["owner"])
    bea_ship = _membership(org, bea)

    confirm = owner.get(_url(org, "members", bea_ship.pk, "remove"))
    assert confirm.status_code == 200
    assert "Remove bea@example.com from Acme?" in confirm.text
    assert ">Remove</button>" in confirm.text and ">Cancel</a>" in confirm.text
    assert "confirm(" not in confirm.text  # a page, not a script
    assert Membership.objects.filter(pk=bea_ship.pk).exists(), "GET changes nothing"

    done = owner.post(_url(org, "members", bea_ship.pk, "remove"), follow=True)
    assert "bea@example.com was removed from Acme" in done.text
    assert not Membership.objects.filter(organization=org, user=bea).exists()

    assert bea_client.get(_url(org)).status_code == 404
    assert bea_client.get(f"/orgs/{org.public_id}/apps/{app.public_id}/").status_code == 404
    assert bea_client.get(f"/orgs/{org.public_id}/apps/{app.public_id}/settings/").status_code == 404


def test_a_removed_member_is_no_longer_assigned_issues(acme):
    org, app, bea = acme["org"], acme["app"], acme["member"]
    user_email_mark_verified(user=bea)
    release_store(
        app=app, version="v2", environment="production", deployed_at=timezone.now(),
        commits=[{"sha": "b2" * 20, "author_name": "Bea", "author_email": "bea@example.com", "message": "Discounts",
                  "timestamp": (timezone.now() - timedelta(hours=1)).isoformat(),
                  "files": [{"path": "orders/views.py", "status": "modified", "hunks": [[40, 3, 41, 3]]}]}],
    )  # fmt: skip
    earlier = digest_followup(app, crash("checkout", 42))
    assert earlier.followup.assignee == bea  # while she is a member

    _client(acme["owner"]).post(_url(org, "members", _membership(org, bea).pk, "remove"))
    issue = digest_followup(app, crash("pay", 41))
    followup = IssueFollowup.objects.get(issue=issue)
    assert followup.suspect_commit is not None and followup.assignee_id is None
    # Her earlier issue is unassigned too (else its alerts would reach nobody), and says so.
    assert IssueFollowup.objects.get(issue=earlier).assignee_id is None
    page = _client(acme["owner"]).get(f"/orgs/{org.public_id}/apps/{app.public_id}/issues/{earlier.pk}/")
    assert "bea@example.com matches no verified address or verified alias of a member" in page.text


def test_roles_change_after_confirming_and_never_leave_zero_owners(acme):
    org, owner_user, bea = acme["org"], acme["owner"], acme["member"]
    owner = _client(owner_user)
    owner_ship, bea_ship = _membership(org, owner_user), _membership(org, bea)

    # The only owner cannot be made a member, nor removed (removing oneself is leaving).
    page = owner.post(_url(org, "members", owner_ship.pk, "role"), {"role": "member"}, follow=True)
    assert "is the last owner of Acme" in page.text
    assert _membership(org, owner_user).role == Membership.Role.OWNER
    assert owner.post(_url(org, "members", owner_ship.pk, "remove"), follow=True).redirect_chain[0][0] == _url(
        org, "leave"
    )
    assert Membership.objects.filter(pk=owner_ship.pk).exists()

    confirm = owner.get(_url(org, "members", bea_ship.pk, "role") + "?role=owner")
    assert "Make bea@example.com an owner of Acme?" in confirm.text and 'name="role" value="owner"' in confirm.text
    assert _membership(org, bea).role == Membership.Role.MEMBER
    page = owner.post(_url(org, "members", bea_ship.pk, "role"), {"role": "owner"}, follow=True)
    assert "bea@example.com is now an owner of Acme" in page.text
    assert _membership(org, bea).role == Membership.Role.OWNER

    # With two owners, one may step down; then Bea is the last and stays.
    owner.post(_url(org, "members", owner_ship.pk, "role"), {"role": "member"})
    assert _membership(org, owner_user).role == Membership.Role.MEMBER
    assert owner.post(_url(org, "members", bea_ship.pk, "role"), {"role": "member"}).status_code == 403
    page = _client(bea).post(_url(org, "members", bea_ship.pk, "role"), {"role": "member"}, follow=True)
    assert "is the last owner of Acme" in page.text
    assert _membership(org, bea).role == Membership.Role.OWNER


def test_a_member_can_leave_and_the_last_owner_cannot(acme):
    org, owner_user, bea = acme["org"], acme["owner"], acme["member"]
    bea_client = _client(bea)
    confirm = bea_client.get(_url(org, "leave"))
    assert "Leave Acme?" in confirm.text and ">Leave</button>" in confirm.text
    assert Membership.objects.filter(organization=org, user=bea).exists()
    left = bea_client.post(_url(org, "leave"), follow=True)
    assert "You left Acme" in left.text
    assert bea_client.get(_url(org)).status_code == 404

    owner = _client(owner_user)
    refused = owner.post(_url(org, "leave"), follow=True)
    assert "You are the last owner of Acme" in refused.text
    assert _membership(org, owner_user).role == Membership.Role.OWNER


# --- Invites: expiry and revocation ---------------------------------------------------------------


def test_an_expired_invite_says_so_and_joins_nothing(client, acme):
    org = acme["org"]
    _, token = invite_make(org, "late@example.com", expires_at=timezone.now() - timedelta(minutes=1))
    page = client.get(f"/invites/{token}/")
    assert page.status_code == 410 and "This invite has expired" in page.text
    assert "Ask an owner of Acme to send you a new one" in page.text
    assert client.post(f"/invites/{token}/", {"email": "late@example.com", "password": PASSWORD}).status_code == 410
    assert not User.objects.filter(email="late@example.com").exists()

    late = user_create(email="late@example.com")
    assert _client(late).post(f"/invites/{token}/").status_code == 410
    assert not Membership.objects.filter(organization=org, user=late).exists()


def test_invites_expire_after_seven_days(acme, mailoutbox, django_capture_on_commit_callbacks):
    org = acme["org"]
    with django_capture_on_commit_callbacks(execute=True):
        _client(acme["owner"]).post(_url(org, "invites"), {"email": "new@example.com"})
    invite = Invite.objects.get()
    assert timedelta(days=7) - timedelta(minutes=1) < invite.expires_at - timezone.now() <= timedelta(days=7)
    assert "for 7 days" in mailoutbox[0].body


def test_an_owner_revokes_a_pending_invite_and_its_link_joins_nothing(
    acme, mailoutbox, django_capture_on_commit_callbacks
):
    org = acme["org"]
    owner = _client(acme["owner"])
    with django_capture_on_commit_callbacks(execute=True):
        owner.post(_url(org, "invites"), {"email": "new@example.com"})
    invite = Invite.objects.get()
    link = mailoutbox[0].body.split("https://errors.example.com", 1)[1].split()[0]
    assert Client().get(link).status_code == 200

    page = owner.get(_url(org))
    assert f'href="{_url(org, "invites", invite.pk, "revoke")}"' in page.text
    confirm = owner.get(_url(org, "invites", invite.pk, "revoke"))
    assert "Revoke the invite of new@example.com to Acme?" in confirm.text
    assert Invite.objects.get().revoked_at is None
    done = owner.post(_url(org, "invites", invite.pk, "revoke"), follow=True)
    assert "was revoked" in done.text
    assert "new@example.com" not in owner.get(_url(org)).text.split("Pending invites")[-1]

    dead = Client().get(link)
    assert dead.status_code == 410 and "This invite was revoked" in dead.text
    assert Client().post(link, {"email": "new@example.com", "password": PASSWORD}).status_code == 410
    assert not User.objects.filter(email="new@example.com").exists()
    # Revoked once, it is gone from the owner's list: a second revoke is a 404.
    assert owner.post(_url(org, "invites", invite.pk, "revoke")).status_code == 404
