"""Alerts: who hears about an issue, what the email and webhook say, and when the email leaves.

Triggers (``processing.followup`` decides them): a new issue, a regression, a spike. Recipients:
the assignee when there is one (Opbeat's default), else the members whose per-app subscription
is "all"; "assigned to me" members hear only of their issues, "none" never.

When a mail leaves: a regression or a spike is news on its own and leaves at once. A new issue
leaves at once too, unless the member was mailed less than their digest window ago (their own
choice on the Alerts page, else the app's ``digest_minutes``; 0 means each alert at once): then
it waits in an ``AlertNotice`` whose ``due_at`` is the end of that window, and every waiting
notice of the person leaves in one digest at the earliest ``due_at`` among them. A due time never
moves: a later alert joins the waiting digest instead of restarting the window. The worker
schedules ``alerts_flush`` for the next due time (``alerts_due_next``); beat also runs it every
minute, so a lost schedule costs at most a minute.

The webhook (one per app) gets the same triggers as Slack-compatible JSON (``text`` plus
``attachments``), with our fields alongside; ``webhooks`` sends it.

This module sends mail and HTTP requests; it never writes issues or events, only AlertNotice rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Max, Min

from accounts.models import App, User

from .grouping import frame_is_in_app, frames_of
from .models import AlertNotice, AlertSubscription, AppAlertSettings, Event, Issue, IssueFollowup
from .webhooks import webhook_post

logger = logging.getLogger(__name__)

KIND_LABELS = {"new": "New issue", "regression": "Regression", "spike": "Spike"}
WEBHOOK_RECIPIENT = "webhook"


def alert_settings_get(*, app: App) -> AppAlertSettings:
    """The app's policy; an unsaved row with the defaults when none was stored."""
    return AppAlertSettings.objects.filter(app=app).first() or AppAlertSettings(app=app)


def issue_url(issue: Issue) -> str:
    app = issue.app
    return f"{settings.BASE_URL}/orgs/{app.organization.public_id}/apps/{app.public_id}/issues/{issue.pk}/"


@dataclass(frozen=True)
class Recipient:
    user: User
    # New issues within this many minutes of the last mail to this person wait for one digest.
    digest_minutes: int


def alert_recipients(*, issue: Issue, followup: IssueFollowup, policy: AppAlertSettings) -> list[Recipient]:
    members = list(User.objects.filter(memberships__organization_id=issue.app.organization_id, is_active=True))
    subscriptions = {s.user_id: s for s in AlertSubscription.objects.filter(app_id=issue.app_id)}
    assignee_id = followup.assignee_id
    recipients = []
    for user in members:
        subscription = subscriptions.get(user.pk)
        mode = subscription.mode if subscription else AlertSubscription.Mode.ALL
        if mode == AlertSubscription.Mode.NONE:
            continue
        if assignee_id is not None and user.pk != assignee_id:
            # An assigned issue alerts its assignee only.
            continue
        if assignee_id is None and mode != AlertSubscription.Mode.ALL:
            continue
        chosen = subscription.digest_minutes if subscription else None
        recipients.append(Recipient(user=user, digest_minutes=policy.digest_minutes if chosen is None else chosen))
    return recipients


# --- Content ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertWhat:
    """What happened: the kind, and what the mail must say about it."""

    kind: str  # "new", "regression" or "spike"
    # A regression: the release the issue happened again in ("" when the event named none).
    release: str = ""
    # A spike: ``count`` events within ``minutes``, against the app's ``threshold``.
    count: int = 0
    minutes: int = 0
    threshold: int = 0


@dataclass
class AlertContent:
    subject: str
    body: str
    webhook: dict
    # The subject without the app and title: "New exception", "Regression in release v3".
    headline: str


def issue_noun(issue: Issue) -> str:
    """Whether the issue is an exception or a logged message, as the mail says it."""
    return "exception" if issue.exception_type else "message"


def alert_headline(*, issue: Issue, what: AlertWhat) -> str:
    if what.kind == "new":
        return f"New {issue_noun(issue)}"
    if what.kind == "regression":
        return f"Regression in release {what.release}" if what.release else "Regression"
    if what.kind == "spike":
        return f"Spike of {what.count} events in {what.minutes} minutes"
    return KIND_LABELS.get(what.kind, what.kind)


def _first_in_app_frame(data: dict) -> dict | None:
    # The same in-app rule as grouping, so the mail names the frame the issue page shows.
    for frame in reversed(frames_of(data)):
        if frame_is_in_app(frame):
            return frame
    return None


def _frame_lines(frame: dict) -> list[str]:
    lineno = frame.get("lineno") if isinstance(frame.get("lineno"), int) else 0
    pre = [line for line in frame.get("pre_context") or [] if isinstance(line, str)]
    post = [line for line in frame.get("post_context") or [] if isinstance(line, str)]
    lines = []
    for offset, line in enumerate(pre):
        lines.append(f"   {lineno - len(pre) + offset:>5}  {line}")
    if isinstance(frame.get("context_line"), str):
        lines.append(f" > {lineno:>5}  {frame['context_line']}")
    for offset, line in enumerate(post, start=1):
        lines.append(f"   {lineno + offset:>5}  {line}")
    return lines


def _slack_escape(text: str) -> str:
    # Slack's message format: these three are control characters in "text" (links are <url|label>).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _what_happened(*, issue: Issue, what: AlertWhat) -> str:
    noun = "an exception" if issue_noun(issue) == "exception" else "a message"
    if what.kind == "new":
        return f"New issue in {issue.app.name}, {noun}: {issue.title}"
    if what.kind == "regression":
        return f"Regression in {issue.app.name}, {noun}: {issue.title}"
    if what.kind == "spike":
        return (
            f"Spike in {issue.app.name}, {noun}: {what.count} events in the last {what.minutes} minutes "
            f"(the threshold is {what.threshold}): {issue.title}"
        )
    return f"{KIND_LABELS.get(what.kind, what.kind)} in {issue.app.name}, {noun}: {issue.title}"


def alert_content(*, issue: Issue, followup: IssueFollowup | None, what: AlertWhat, event: Event | None) -> AlertContent:
    headline = alert_headline(issue=issue, what=what)
    url = issue_url(issue)
    data = event.data if event is not None and isinstance(event.data, dict) else {}
    exception = data.get("exception") if isinstance(data.get("exception"), dict) else {}
    if issue.exception_type:
        detail = ": ".join(str(part) for part in (exception.get("type"), exception.get("value")) if part) or issue.title
        detail_line = f"Exception: {detail}"
    else:
        detail = data.get("message") if isinstance(data.get("message"), str) and data["message"].strip() else issue.title
        detail_line = f"Message: {detail[:2000]}"
    lines = [_what_happened(issue=issue, what=what)]
    if what.kind == "regression":
        resolved = f" on {issue.resolved_at:%Y-%m-%d %H:%M} UTC" if issue.resolved_at else ""
        again = f" in release {what.release}" if what.release else ""
        lines.append(f"It was resolved{resolved} and happened again{again}.")
    lines += [
        "",
        detail_line,
        f"Culprit: {issue.culprit or '-'}",
        f"Events: {issue.event_count}, first seen {issue.first_seen:%Y-%m-%d %H:%M} UTC",
    ]
    if followup is not None and followup.first_release:
        lines.append(f"First seen in release: {followup.first_release}")
    frame = _first_in_app_frame(data)
    if frame is not None:
        where = f"{frame.get('filename') or frame.get('abs_path') or '?'}:{frame.get('lineno', '?')} in {frame.get('function') or '?'}"
        lines += ["", f"First in-app frame: {where}", *_frame_lines(frame)]
    suspect = ""
    if followup is not None and followup.suspect_commit_id:
        commit = followup.suspect_commit
        suspect = f"{commit.sha[:7]} '{(commit.message.splitlines() or [''])[0]}' by {commit.author_name} <{commit.author_email}>"
        lines += ["", f"Suspect commit: {suspect}", f"Why: {followup.suspect_reason}"]
        if followup.assignee_id:
            lines.append(f"Assigned to: {followup.assignee.email}")
    lines += ["", f"Open the issue: {url}", "", "Change which alerts you get, and how often, on the app's alerts page."]
    subject = f"[{issue.app.name}] {headline}: {issue.title}"[:200]
    fields = [{"title": "Culprit", "value": issue.culprit or "-", "short": False}]
    if suspect:
        fields.append({"title": "Suspect commit", "value": suspect, "short": False})
    webhook = {
        "text": f"{headline} in {_slack_escape(issue.app.name)}: <{url}|{_slack_escape(issue.title)}>",
        "attachments": [
            {"fallback": f"{headline}: {issue.title} {url}", "color": "danger", "title": issue.title, "title_link": url,
             "text": detail, "fields": fields}
        ],
        "opbeat": {"kind": what.kind, "issue_id": issue.pk, "app": issue.app.public_id, "url": url,
                   "title": issue.title, "culprit": issue.culprit, "event_count": issue.event_count,
                   "issue_kind": issue_noun(issue), "release": what.release or None,
                   "spike": {"count": what.count, "minutes": what.minutes} if what.kind == "spike" else None},
    }  # fmt: skip
    return AlertContent(subject=subject.replace("\n", " "), body="\n".join(lines), webhook=webhook, headline=headline)


# --- Sending ------------------------------------------------------------------------------------


def _mail_send(messages: list[EmailMessage]) -> None:
    if not messages:
        return
    try:
        with get_connection() as connection:
            connection.send_messages(messages)
    except Exception as exc:  # noqa: BLE001 - an SMTP outage loses these emails, never the digest
        logger.warning("alerts: could not send %d email(s): %s", len(messages), exc)


def _digest_due(*, address: str, minutes: int, now: datetime) -> datetime | None:
    """When a new-issue alert to ``address`` must leave: None for at once (nothing mailed to
    them within ``minutes`` and nothing waiting), else the end of the window, or the due time of
    the digest already waiting when that is earlier. A due time in the past means now."""
    if minutes <= 0:
        return None
    last = AlertNotice.objects.filter(recipient=address, sent_at__isnull=False).aggregate(at=Max("sent_at"))["at"]
    waiting = AlertNotice.objects.filter(recipient=address, sent_at__isnull=True).aggregate(at=Min("due_at"))["at"]
    window_end = last + timedelta(minutes=minutes) if last is not None else None
    if waiting is not None:
        return min(waiting, window_end) if window_end is not None else waiting
    if window_end is None or window_end <= now:
        return None
    return window_end


def issue_alert(*, issue: Issue, followup: IssueFollowup, what: AlertWhat, now: datetime) -> list[str]:
    """Alert the recipients of ``issue`` about ``what``; returns the addresses emailed now (the
    others wait for their digest, ``alerts_due_next`` says until when). The caller has checked
    the per-issue window."""
    policy = alert_settings_get(app=issue.app)
    event = Event.objects.filter(issue=issue).order_by("-timestamp", "-pk").first()
    content = alert_content(issue=issue, followup=followup, what=what, event=event)
    emailed: list[str] = []
    digest_now: list[str] = []
    with transaction.atomic():
        for recipient in alert_recipients(issue=issue, followup=followup, policy=policy):
            address = recipient.user.email
            # Only new issues wait for a digest: a regression or a spike is news on its own.
            due = _digest_due(address=address, minutes=recipient.digest_minutes, now=now) if what.kind == "new" else None
            AlertNotice.objects.create(
                app=issue.app, issue=issue, kind=what.kind, summary=content.headline, recipient=address,
                created_at=now, due_at=due, sent_at=None if due is not None else now,
            )  # fmt: skip
            if due is None:
                emailed.append(address)
                # This mail tells the issue as it is now; a notice of it still waiting in this
                # person's digest would tell older news ("new" for an issue that regressed since).
                AlertNotice.objects.filter(issue=issue, recipient=address, sent_at__isnull=True).update(sent_at=now)
            elif due <= now:
                digest_now.append(address)
    _mail_send(
        [EmailMessage(subject=content.subject, body=content.body, to=[address], from_email=settings.DEFAULT_FROM_EMAIL) for address in emailed]
    )
    if digest_now:
        # Their window ended before beat or the scheduled flush came round: the waiting digest
        # leaves now, with this issue in it, rather than this one alone restarting the window.
        digests_send(addresses=digest_now, now=now)
    if policy.webhook_url:
        ok = webhook_post(url=policy.webhook_url, payload=content.webhook)
        AlertNotice.objects.create(
            app=issue.app, issue=issue, kind=what.kind, summary=content.headline, recipient=WEBHOOK_RECIPIENT,
            created_at=now, sent_at=now if ok else None,
        )  # fmt: skip
    return emailed


def _waiting():
    return AlertNotice.objects.filter(sent_at__isnull=True).exclude(recipient=WEBHOOK_RECIPIENT)


def alerts_due_next() -> datetime | None:
    """The earliest time a waiting digest is due (the worker schedules ``alerts_flush`` for it)."""
    return _waiting().aggregate(at=Min("due_at"))["at"]


def _digest_message(address: str, notices: list[AlertNotice]) -> EmailMessage:
    if len(notices) == 1:
        notice = notices[0]
        subject = f"[{notice.issue.app.name}] {notice.summary or KIND_LABELS.get(notice.kind, notice.kind)}: {notice.issue.title}"
    else:
        apps = sorted({notice.issue.app.name for notice in notices})
        where = f" in {apps[0]}" if len(apps) == 1 else ""
        what = "new issues" if all(notice.kind == "new" for notice in notices) else "alerts"
        subject = f"Opbeat: {len(notices)} {what}{where}"
    lines = [f"{len(notices)} {'alert' if len(notices) == 1 else 'alerts'} since your last email:", ""]
    for notice in notices:
        issue = notice.issue
        summary = notice.summary or KIND_LABELS.get(notice.kind, notice.kind)
        lines.append(f"- {summary} in {issue.app.name}: {issue.title}")
        lines.append(f"  culprit: {issue.culprit or '-'}")
        lines.append(f"  first seen {issue.first_seen:%Y-%m-%d %H:%M} UTC, {issue.event_count} events")
        if issue.status != Issue.Status.UNRESOLVED:
            lines.append(f"  {issue.get_status_display().lower()} since")
        lines.append(f"  {issue_url(issue)}")
    lines += ["", "You get new issues in one email at most every few minutes; change that on the app's alerts page."]
    return EmailMessage(subject=subject[:200].replace("\n", " "), body="\n".join(lines), to=[address], from_email=settings.DEFAULT_FROM_EMAIL)


def digests_send(*, addresses: list[str], now: datetime) -> int:
    """Send each address one digest of all its waiting notices; returns the number of emails.
    Each person's notices are claimed in a transaction (rows another flush holds are skipped),
    so two workers flushing at once never send a notice twice."""
    messages = []
    for address in addresses:
        with transaction.atomic():
            notices = list(
                _waiting().filter(recipient=address).select_for_update(skip_locked=True, of=("self",))
                .select_related("issue__app__organization").order_by("created_at", "pk")
            )  # fmt: skip
            if not notices:
                continue
            AlertNotice.objects.filter(pk__in=[notice.pk for notice in notices]).update(sent_at=now)
        messages.append(_digest_message(address, notices))
    _mail_send(messages)
    return len(messages)


def alerts_flush(*, now: datetime | None = None) -> int:
    """Send the digest of every person whose earliest waiting notice is due; returns the number
    of emails sent."""
    now = now or datetime.now(tz=dt_timezone.utc)
    due: dict[str, datetime] = {}
    for address, due_at, created_at in _waiting().values_list("recipient", "due_at", "created_at"):
        # A notice without a due time (stored before due times existed) is due now.
        when = due_at or created_at
        due[address] = min(due.get(address, when), when)
    return digests_send(addresses=sorted(address for address, when in due.items() if when <= now), now=now)


def webhook_payload_example() -> dict[str, Any]:
    """What the app's alerts page shows as the webhook's body."""
    return {"text": "New exception in web: <https://opbeat.example/orgs/…/issues/12/|ZeroDivisionError: division by zero>",
            "attachments": [{"title": "ZeroDivisionError: division by zero", "title_link": "https://…", "fields": []}],
            "opbeat": {"kind": "new", "issue_id": 12, "url": "https://…", "issue_kind": "exception"}}  # fmt: skip
