"""The tenancy nouns: users, organizations, their members and invites, apps and their tokens.

Public ids (``Organization.public_id``, ``App.public_id``) are what the Opbeat Intake API and the
dashboard URLs carry; integer primary keys stay inside the server (queue messages, foreign keys).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.contrib.auth.models import AbstractUser, UserManager as DjangoUserManager
from django.db import models
from django.urls import reverse
from django.utils import timezone


def public_id_new() -> str:
    # Opbeat's ids were short hex strings; 16 hex characters keep URLs short and unguessable enough
    # to not leak counts (access is still checked on every request).
    return secrets.token_hex(8)


def secret_token_new() -> str:
    return secrets.token_hex(20)


def secret_token_hash(token: bytes) -> str:
    """What is kept of an app's secret token: its SHA-256, in hex.

    A fast hash is enough (as for GitHub's tokens): the token is 160 random bits, so there is no
    dictionary to try, and the intake must hash the bearer of every request. Unsalted, so an app
    can be found by its token's hash alone.
    """
    return hashlib.sha256(token).hexdigest()


def secret_token_hash_of_nothing() -> str:
    """A unique hash whose token nobody has: an app made without ``accounts.services`` (bulk
    loads, benchmarks) takes no events until an owner rotates its token."""
    return secret_token_hash(secrets.token_bytes(32))


class UserManager(DjangoUserManager):
    def create_user(self, email, password=None, **extra_fields):
        email = self.normalize_email(email).lower()
        extra_fields.setdefault("username", email)
        return super().create_user(extra_fields.pop("username"), email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        email = self.normalize_email(email).lower()
        extra_fields.setdefault("username", email)
        return super().create_superuser(extra_fields.pop("username"), email, password, **extra_fields)


class User(AbstractUser):
    """A person; they log in with their email address."""

    email = models.EmailField(unique=True)
    # Set when the person followed a link mailed to ``email`` that nobody else saw (the
    # verification link, or an invite mailed there), or an operator provisioned them: only then
    # may commits by that address be theirs (``accounts.verification``).
    email_verified_at = models.DateTimeField(null=True, blank=True)
    # When the last verification link left, so "resend" can be limited per user across processes.
    email_verification_sent_at = models.DateTimeField(null=True, blank=True)
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email


class Organization(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=public_id_new)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("org_detail", kwargs={"org_id": self.public_id})


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="membership_unique")]


def invite_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Invite(models.Model):
    """An invitation of ``email`` to an organization, reached through the link mailed there.

    Only the sha256 of the link's token is stored: the raw token exists only in the mail, so a
    database reader or the inviter cannot use it (``accounts.verification`` relies on that).
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invites")
    email = models.EmailField()
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Moved forward each time the invite is mailed again (with a new token).
    sent_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Whether accepting with ``email`` proves that mailbox: false for invites made while their
    # link was also shown to the inviter, who could then have used it themselves.
    verifies_email = models.BooleanField(default=True)

    def state(self, now: datetime | None = None) -> str:
        if self.accepted_at is not None:
            return self.State.ACCEPTED
        if self.revoked_at is not None:
            return self.State.REVOKED
        if self.expires_at <= (now or timezone.now()):
            return self.State.EXPIRED
        return self.State.PENDING


class App(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="apps")
    public_id = models.CharField(max_length=32, unique=True, default=public_id_new)
    name = models.CharField(max_length=200)
    # The token itself is shown once, when it is made (``accounts.services``), and never stored.
    secret_token_hash = models.CharField(max_length=64, unique=True, default=secret_token_hash_of_nothing)
    # The token's last characters, so a person can tell which token an agent has.
    secret_token_hint = models.CharField(max_length=4, blank=True, default="")
    token_rotated_at = models.DateTimeField(null=True, blank=True)
    # Per-app policy is data: None means the default from settings.OPBEAT_LIMITS.
    events_per_minute = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="app_name_unique_in_org")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        # The app's issue list, served by the dashboards room (URL contract in the briefs); built
        # here rather than reversed so accounts does not depend on dashboards being installed.
        return f"/orgs/{self.organization.public_id}/apps/{self.public_id}/"

    def get_settings_url(self) -> str:
        return reverse("app_settings", kwargs={"org_id": self.organization.public_id, "app_id": self.public_id})
