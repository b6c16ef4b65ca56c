"""Sign-ups from one client address are limited: each runs the password hasher and mails a
verification link, so an unlimited form is a CPU and mail cannon."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core import mail
from django.core.cache import cache

import accounts.throttle
from accounts.models import User

pytestmark = pytest.mark.django_db
ATTACKER_IP = "198.51.100.77"


def _signup(client, n: int, ip: str):
    client.logout()
    return client.post(
        "/signup/",
        {"email": f"user{n}@example.com", "password": "correct horse battery", "organization_name": f"Org {n}"},
        REMOTE_ADDR=ip,
    )


def test_the_eleventh_signup_from_one_address_in_an_hour_is_refused(client, settings, monkeypatch):
    cache.clear()
    # The start of an hour: the whole test falls in one window of the real throttle.
    monkeypatch.setattr(accounts.throttle, "time", SimpleNamespace(time=lambda: 1_800_000_000.0))
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.OPBEAT_AUTH_LIMITS = {**settings.OPBEAT_AUTH_LIMITS, "signup_address": (10, 3600)}
    for n in range(10):
        assert _signup(client, n, ATTACKER_IP).status_code == 302
    mails_before = len(mail.outbox)

    refused = _signup(client, 10, ATTACKER_IP)

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Too many sign-ups from your address. Try again in" in refused.content.decode()
    assert not User.objects.filter(email="user10@example.com").exists()
    assert len(mail.outbox) == mails_before, "no verification mail for a refused sign-up"
    # Someone else is not affected.
    assert _signup(client, 11, "203.0.113.11").status_code == 302
    assert User.objects.filter(email="user11@example.com").exists()
