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
    # No index of its own: the (app, environment, timestamp) index below starts with it.
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+", db_index=False)
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
        indexes = [
            models.Index(fields=["issue", "timestamp"], name="event_issue_time"),
            # The release figures count the events of one environment in the minute of a deploy.
            models.Index(fields=["app", "environment", "timestamp"], name="event_app_env_time"),
        ]


class IssueHourly(models.Model):
    """Events per issue, environment and hour; app is repeated so app-wide charts need no join.
    The figures of all environments are the sum of an issue's rows ("" is an event that named
    no environment, and every row written before environments were kept)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="hourly")
    environment = models.CharField(max_length=100, blank=True, default="")
    hour = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issue", "environment", "hour"], name="issue_hourly_env_unique")]
        indexes = [models.Index(fields=["app", "hour"], name="issue_hourly_app_hour")]


class IssueEnvironment(models.Model):
    """An issue's events in one environment: what the issue page lists and what the issue list
    filters and sorts on when an environment is chosen. Written by the digest in bulk."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="environments")
    environment = models.CharField(max_length=100, blank=True, default="")
    count = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issue", "environment"], name="issue_environment_unique")]
        # One index: each more costs the digest's upsert (count and last_seen change on every
        # batch, so no update is HOT); sorting one environment by count or first seen sorts
        # the rows of that (app, environment) prefix.
        indexes = [models.Index(fields=["app", "environment", "last_seen"], name="issue_env_last")]


class ErrorMinute(models.Model):
    """Events of an app per environment and minute: the release figures count errors before and
    after a deploy from these (and the deploy's own minute from the events themselves)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=100, blank=True, default="")
    minute = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "environment", "minute"], name="error_minute_unique")]


class Environment(models.Model):
    """The environments an app's events, transactions or releases have named (the pages' selector).
    "" (none named) is not listed."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    first_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "name"], name="environment_unique")]


class IssueUser(models.Model):
    """One row per distinct user an issue affected: users_count is the number of these rows."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="+")
    user_key = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issue", "user_key"], name="issue_user_unique")]


class RejectionCount(models.Model):
    """Requests the intake refused, per app, reason and hour (sent by the intake via the queue),
    with the latest refusal's status and message: the example the dashboard shows."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=40)
    hour = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)
    status = models.PositiveSmallIntegerField(default=0)
    example = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "reason", "hour"], name="rejection_unique")]


# --- Releases, suspect commits and alerts (issue 5) -------------------------------------------------


class Release(models.Model):
    """One deploy of a version to an environment. ``deploy_order`` numbers the releases of an
    (app, environment) in the order they were first posted: "after release R" means a larger
    number in the same environment. Re-posting a release keeps its number (idempotent)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="releases")
    version = models.CharField(max_length=200)
    environment = models.CharField(max_length=100, blank=True, default="")
    branch = models.CharField(max_length=200, blank=True, default="")
    # The original release tracker's status ("completed", "machine-completed").
    status = models.CharField(max_length=40, blank=True, default="")
    deployed_at = models.DateTimeField()
    deploy_order = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["app", "environment", "version"], name="release_unique"),
            models.UniqueConstraint(fields=["app", "environment", "deploy_order"], name="release_order_unique"),
        ]
        indexes = [models.Index(fields=["app", "deployed_at"], name="release_app_deployed")]


class Commit(models.Model):
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    sha = models.CharField(max_length=64)
    author_name = models.CharField(max_length=200, blank=True, default="")
    # Lowercased: matched against members' emails and aliases.
    author_email = models.CharField(max_length=254, blank=True, default="")
    message = models.TextField(blank=True, default="")
    timestamp = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "sha"], name="commit_unique")]
        indexes = [models.Index(fields=["app", "timestamp"], name="commit_app_time")]


class ReleaseCommit(models.Model):
    """The commits a release brought (since the previous one); ``position`` 0 is the newest."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="release_commits")
    commit = models.ForeignKey(Commit, on_delete=models.CASCADE, related_name="release_commits")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["release", "commit"], name="release_commit_unique")]


class CommitFile(models.Model):
    """A file a commit changed, with its hunks ``[[old_start, old_lines, new_start, new_lines], ...]``
    as ``git diff -U0`` reports them; app is repeated so the suspect search needs no join."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    commit = models.ForeignKey(Commit, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=500)
    status = models.CharField(max_length=20, blank=True, default="modified")
    hunks = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["commit", "path"], name="commit_file_unique")]
        indexes = [models.Index(fields=["app", "path"], name="commit_file_app_path")]


class IssueFollowup(models.Model):
    """What the worker decided about an issue after digesting it: its release, suspect commit,
    assignee, and the alerts sent. Its own table so the digest's bulk upserts of ``Issue`` stay
    untouched; one row per issue, created when the issue is first followed up."""

    issue = models.OneToOneField(Issue, on_delete=models.CASCADE, related_name="followup")
    first_release = models.CharField(max_length=200, blank=True, default="")
    first_environment = models.CharField(max_length=100, blank=True, default="")
    regressed_release = models.CharField(max_length=200, blank=True, default="")
    suspect_commit = models.ForeignKey(Commit, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    suspect_reason = models.TextField(blank=True, default="")
    assignee = models.ForeignKey("accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # A person chose the assignee: the worker never changes it again.
    assigned_manually = models.BooleanField(default=False)
    # "Resolve in the next release": regress only on an event of a release deployed after this one.
    resolved_in_release = models.ForeignKey(Release, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    regression_alerted_at = models.DateTimeField(null=True, blank=True)
    spike_alerted_at = models.DateTimeField(null=True, blank=True)
    last_alert_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["first_release"], name="followup_first_release")]


class AppAlertSettings(models.Model):
    """Per-app policy for assignment and alerts (data, not settings); a missing row means the defaults."""

    app = models.OneToOneField(App, on_delete=models.CASCADE, related_name="alert_settings")
    auto_assign = models.BooleanField(default=True)
    alert_new = models.BooleanField(default=True)
    alert_regression = models.BooleanField(default=True)
    alert_spike = models.BooleanField(default=True)
    spike_threshold = models.PositiveIntegerField(default=100)
    spike_window_minutes = models.PositiveIntegerField(default=60)
    # At most one alert per issue per this window.
    issue_window_minutes = models.PositiveIntegerField(default=60)
    # New issues within this many minutes of a person's last alert go into one digest.
    digest_minutes = models.PositiveIntegerField(default=5)
    webhook_url = models.URLField(max_length=500, blank=True, default="")


class AlertSubscription(models.Model):
    class Mode(models.TextChoices):
        ALL = "all", "All alerts"
        ASSIGNED = "assigned", "Only issues assigned to me"
        NONE = "none", "None"

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.ALL)
    # The member's own digest window for this app's new issues: 0 is "each alert at once", empty
    # is the app's ``AppAlertSettings.digest_minutes``.
    digest_minutes = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "user"], name="alert_subscription_unique")]


class EmailAlias(models.Model):
    """Another address a person commits with; matched against commit authors."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="email_aliases")
    email = models.CharField(max_length=254, unique=True)
    # Empty until the link mailed to ``email`` is confirmed; an unverified alias matches nothing
    # (``processing.suspects.member_for_email``) and may be claimed by another account.
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_sent_at = models.DateTimeField(null=True, blank=True)


class AlertNotice(models.Model):
    """One alert for one recipient (an email address, or "webhook"). ``sent_at`` empty means it
    waits for the next digest of that recipient, which leaves at ``due_at`` at the latest."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16)
    # What happened, as the mail's subject says it ("New exception", "Regression in release v3").
    summary = models.CharField(max_length=300, blank=True, default="")
    recipient = models.CharField(max_length=254)
    created_at = models.DateTimeField()
    due_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["recipient", "sent_at"], name="alert_notice_recipient"),
            models.Index(fields=["issue", "created_at"], name="alert_notice_issue"),
        ]


# --- Performance (issue 4): written by ``processing.rollups``, read by ``dashboards.performance`` ---


class TransactionName(models.Model):
    """A transaction name of an app (``GET /orders/<int:pk>/``, a task name). At most
    ``OPBEAT_LIMITS["transaction_names_per_app"]`` per app: later names are counted under
    ``OTHER``. The row named ``TOTAL`` ("" never comes from a client) holds the app's totals."""

    OTHER = "_other"
    TOTAL = ""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=60, default="request")
    first_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "name"], name="transaction_name_unique")]


class TransactionRollup(models.Model):
    """One transaction name's requests in one minute, hour or day: the same numbers at three
    resolutions, written together, so a range of any length reads a bounded number of rows.

    ``sketch`` is the durations' distribution (``processing.sketches``: 1 % relative bins that
    merge by adding); ``span_ms`` is exclusive time per span kind over transactions whose
    durations sum to ``span_base_ms`` (every transaction for the original agent, the sampled
    traces for opbeat-agent), so a share of time is ``span_ms[kind] / span_base_ms``.
    """

    class Resolution(models.IntegerChoices):
        MINUTE = 60, "minute"
        HOUR = 3600, "hour"
        DAY = 86400, "day"

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    name = models.ForeignKey(TransactionName, on_delete=models.CASCADE, related_name="rollups")
    # The environment the agent reported ("" none). The pages' "all environments" figures merge
    # the rows of every environment at read time (sketches merge exactly by adding bins).
    environment = models.CharField(max_length=100, blank=True, default="")
    resolution = models.PositiveIntegerField(choices=Resolution.choices)
    bucket = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    sum_ms = models.FloatField(default=0.0)
    min_ms = models.FloatField(default=0.0)
    max_ms = models.FloatField(default=0.0)
    sketch = models.BinaryField(default=b"")
    span_base_ms = models.FloatField(default=0.0)
    span_ms = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["name", "environment", "resolution", "bucket"], name="transaction_rollup_env_unique"
            )
        ]
        indexes = [models.Index(fields=["app", "resolution", "bucket"], name="transaction_rollup_app")]


class TransactionTrace(models.Model):
    """A sampled transaction kept whole, with its spans, for the waterfall: the slowest few of
    each name and minute are stored, and pruning keeps the slowest few of each name and hour."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    name = models.ForeignKey(TransactionName, on_delete=models.CASCADE, related_name="traces")
    # The agent's trace id, or one derived from the intake's envelope id: unique, so a
    # redelivered message stores nothing twice.
    trace_id = models.CharField(max_length=80)
    timestamp = models.DateTimeField()
    duration_ms = models.FloatField()
    result = models.CharField(max_length=40, blank=True, default="")
    hostname = models.CharField(max_length=200, blank=True, default="")
    release = models.CharField(max_length=200, blank=True, default="")
    environment = models.CharField(max_length=100, blank=True, default="")
    spans = models.JSONField(default=list)
    spans_dropped = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "trace_id"], name="transaction_trace_unique")]
        indexes = [models.Index(fields=["name", "timestamp"], name="transaction_trace_name_time")]


class TransactionEnvelope(models.Model):
    """Transactions envelopes already rolled up (the intake's envelope id): a redelivered message
    adds nothing. Pruned after a few days, long after any redelivery."""

    event_id = models.UUIDField(unique=True)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    received_at = models.DateTimeField()
