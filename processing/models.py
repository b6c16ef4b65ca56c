"""What the worker writes: issues (groups of events), their events, and the rollups the
dashboards read. Only ``processing`` writes these tables; dashboards only read them.
"""

from __future__ import annotations

from django.db import models

from accounts.models import App


class Issue(models.Model):
    class Status(models.TextChoices):
        UNRESOLVED = "unresolved", "Unresolved"
        RESOLVED = "resolved", "Resolved"
        IGNORED = "ignored", "Ignored"

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="issues")
    # sha1 hex of the grouping key; grouping_reason says in words what the key was made of.
    fingerprint = models.CharField(max_length=40)
    grouping_reason = models.TextField(blank=True, default="")
    title = models.CharField(max_length=500)
    culprit = models.CharField(max_length=500, blank=True, default="")
    level = models.CharField(max_length=20, blank=True, default="error")
    exception_type = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNRESOLVED)
    is_regressed = models.BooleanField(default=False)
    regressed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveBigIntegerField(default=0)
    users_count = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "fingerprint"], name="issue_fingerprint_unique")]
        indexes = [
            models.Index(fields=["app", "status", "last_seen"], name="issue_app_status_last"),
            models.Index(fields=["app", "status", "first_seen"], name="issue_app_status_first"),
            models.Index(fields=["app", "status", "event_count"], name="issue_app_status_count"),
            models.Index(fields=["app", "last_seen"], name="issue_app_last"),
        ]


class Event(models.Model):
    # Assigned by the intake when it accepts the event; unique so a redelivered message is a no-op.
    event_id = models.UUIDField(unique=True)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="events")
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    title = models.CharField(max_length=500)
    culprit = models.CharField(max_length=500, blank=True, default="")
    user_key = models.CharField(max_length=200, blank=True, default="")
    release = models.CharField(max_length=200, blank=True, default="")
    environment = models.CharField(max_length=100, blank=True, default="")
    # The event as the client sent it (validated, size-capped), unknown fields included.
    data = models.JSONField()

    class Meta:
        indexes = [models.Index(fields=["issue", "timestamp"], name="event_issue_time")]


class IssueHourly(models.Model):
    """Events per issue per hour; app is repeated so app-wide charts need no join."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="hourly")
    hour = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issue", "hour"], name="issue_hourly_unique")]
        indexes = [models.Index(fields=["app", "hour"], name="issue_hourly_app_hour")]


class IssueUser(models.Model):
    """One row per distinct user an issue affected: users_count is the number of these rows."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="+")
    user_key = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issue", "user_key"], name="issue_user_unique")]


class RejectionCount(models.Model):
    """Requests the intake refused, per app, reason and hour (sent by the intake via the queue)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=40)
    hour = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "reason", "hour"], name="rejection_unique")]
