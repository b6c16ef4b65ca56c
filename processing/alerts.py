"""Alerts: who hears about an issue, and the email and webhook that tell them.

Triggers (``processing.followup`` decides them): a new issue, a regression, a spike. Recipients:
the assignee when there is one (Opbeat's default), else the members whose per-app subscription
is "all"; "assigned to me" members hear only of their issues, "none" never. Floods are cut twice:
at most one alert per issue per ``issue_window_minutes`` (checked by the caller), and a person
who was emailed less than ``digest_minutes`` ago gets further new issues in one digest email
(``alerts_flush``, run by beat every minute) instead of one email each.

The webhook (one per app) gets the same triggers as Slack-compatible JSON (``text`` plus
``attachments``), with our fields alongside; ``webhooks`` sends it.

This module sends mail and HTTP requests; it never writes issues or events, only AlertNotice rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction

from accounts.models import App, User

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


def alert_recipients(*, issue: Issue, followup: IssueFollowup) -> list[User]:
    members = list(User.objects.filter(memberships__organization_id=issue.app.organization_id, is_active=True))
    modes = dict(AlertSubscription.objects.filter(app_id=issue.app_id).values_list("user_id", "mode"))
    assignee_id = followup.assignee_id
    recipients = []
    for user in members:
        mode = modes.get(user.pk, AlertSubscription.Mode.ALL)
        if mode == AlertSubscription.Mode.NONE:
            continue
        if assignee_id is not None:
            # An assigned issue alerts its assignee only.
            if user.pk == assignee_id:
                recipients.append(user)
        elif mode == AlertSubscription.Mode.ALL:
            recipients.append(user)
    return recipients


# --- Content ------------------------------------------------------------------------------------


@dataclass
class AlertContent:
    subject: str
    body: str
    webhook: dict


def _first_in_app_frame(data: dict) -> dict | None:
    stacktrace = data.get("stacktrace") if isinstance(data.get("stacktrace"), dict) else None
    frames = stacktrace.get("frames") if stacktrace else None
    if not isinstance(frames, list):
        return None
    for frame in reversed(frames):
        if isinstance(frame, dict) and frame.get("in_app") is not False and not frame.get("library_frame"):
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


def alert_content(*, issue: Issue, followup: IssueFollowup | None, kind: str, event: Event | None) -> AlertContent:
    label = KIND_LABELS.get(kind, kind)
    url = issue_url(issue)
    data = event.data if event is not None and isinstance(event.data, dict) else {}
    exception = data.get("exception") if isinstance(data.get("exception"), dict) else {}
    exc_text = ": ".join(str(part) for part in (exception.get("type"), exception.get("value")) if part) or issue.title
    lines = [
        f"{label} in {issue.app.name}: {issue.title}",
        "",
        f"Exception: {exc_text}",
        f"Culprit: {issue.culprit or '-'}",
        f"Events: {issue.event_count}, first seen {issue.first_seen:%Y-%m-%d %H:%M} UTC",
    ]
    if followup is not None and followup.first_release:
        lines.append(f"First seen in release: {followup.first_release}")
    if kind == "regression" and followup is not None and followup.regressed_release:
        lines.append(f"Regressed in release: {followup.regressed_release}")
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
    lines += ["", f"Open the issue: {url}", "", "Change which alerts you get on the app's alerts page."]
    subject = f"[{issue.app.name}] {label}: {issue.title}"[:200]
    fields = [{"title": "Culprit", "value": issue.culprit or "-", "short": False}]
    if suspect:
        fields.append({"title": "Suspect commit", "value": suspect, "short": False})
    webhook = {
        "text": f"{label} in {_slack_escape(issue.app.name)}: <{url}|{_slack_escape(issue.title)}>",
        "attachments": [
            {"fallback": f"{label}: {issue.title} {url}", "color": "danger", "title": issue.title, "title_link": url,
             "text": exc_text, "fields": fields}
        ],
        "opbeat": {"kind": kind, "issue_id": issue.pk, "app": issue.app.public_id, "url": url,
                   "title": issue.title, "culprit": issue.culprit, "event_count": issue.event_count},
    }  # fmt: skip
    return AlertContent(subject=subject.replace("\n", " "), body="\n".join(lines), webhook=webhook)


# --- Sending ------------------------------------------------------------------------------------


def _mail_send(messages: list[EmailMessage]) -> None:
    if not messages:
        return
    try:
        with get_connection() as connection:
            connection.send_messages(messages)
    except Exception as exc:  # noqa: BLE001 - an SMTP outage loses these emails, never the digest
        logger.warning("alerts: could not send %d email(s): %s", len(messages), exc)


def issue_alert(*, issue: Issue, followup: IssueFollowup, kind: str, now: datetime) -> list[str]:
    """Alert the recipients of ``issue`` about ``kind``; returns the addresses emailed now (the
    others wait for their digest). The caller has checked the per-issue window."""
    policy = alert_settings_get(app=issue.app)
    event = Event.objects.filter(issue=issue).order_by("-timestamp", "-pk").first()
    content = alert_content(issue=issue, followup=followup, kind=kind, event=event)
    recipients = [user.email for user in alert_recipients(issue=issue, followup=followup)]
    digest_since = now - timedelta(minutes=policy.digest_minutes)
    emailed: list[str] = []
    with transaction.atomic():
        # Only new issues are held for a digest: a regression or a spike is news on its own.
        recent = set()
        if kind == "new":
            recent = set(
                AlertNotice.objects.filter(recipient__in=recipients, sent_at__gte=digest_since).values_list("recipient", flat=True)
            )
        for address in recipients:
            AlertNotice.objects.create(
                app=issue.app, issue=issue, kind=kind, recipient=address, created_at=now,
                sent_at=None if address in recent else now,
            )  # fmt: skip
            if address not in recent:
                emailed.append(address)
    _mail_send(
        [EmailMessage(subject=content.subject, body=content.body, to=[address], from_email=settings.DEFAULT_FROM_EMAIL) for address in emailed]
    )
    if policy.webhook_url:
        ok = webhook_post(url=policy.webhook_url, payload=content.webhook)
        AlertNotice.objects.create(app=issue.app, issue=issue, kind=kind, recipient=WEBHOOK_RECIPIENT, created_at=now, sent_at=now if ok else None)
    return emailed


def alerts_flush(*, now: datetime | None = None) -> int:
    """Send the waiting alerts of every person whose digest window has passed, one digest email
    each; returns the number of emails sent."""
    now = now or datetime.now(tz=dt_timezone.utc)
    pending = list(
        AlertNotice.objects.filter(sent_at__isnull=True).exclude(recipient=WEBHOOK_RECIPIENT)
        .select_related("issue__app__organization").order_by("created_at", "pk")
    )  # fmt: skip
    by_recipient: dict[str, list[AlertNotice]] = defaultdict(list)
    for notice in pending:
        by_recipient[notice.recipient].append(notice)
    messages, sent_ids = [], []
    for address, notices in by_recipient.items():
        minutes = max(alert_settings_get(app=notices[0].issue.app).digest_minutes, 0)
        last = AlertNotice.objects.filter(recipient=address, sent_at__isnull=False).order_by("-sent_at").first()
        if last is not None and last.sent_at > now - timedelta(minutes=minutes):
            continue
        lines = [f"{len(notices)} alerts since your last email:", ""]
        for notice in notices:
            lines.append(f"- {KIND_LABELS.get(notice.kind, notice.kind)} in {notice.issue.app.name}: {notice.issue.title}")
            lines.append(f"  culprit: {notice.issue.culprit or '-'}")
            lines.append(f"  {issue_url(notice.issue)}")
        subject = f"Opbeat: {len(notices)} alerts" if len(notices) > 1 else f"[{notices[0].issue.app.name}] {KIND_LABELS.get(notices[0].kind)}: {notices[0].issue.title}"
        messages.append(EmailMessage(subject=subject[:200], body="\n".join(lines), to=[address], from_email=settings.DEFAULT_FROM_EMAIL))
        sent_ids += [notice.pk for notice in notices]
    if sent_ids:
        AlertNotice.objects.filter(pk__in=sent_ids).update(sent_at=now)
    _mail_send(messages)
    return len(messages)


def webhook_payload_example() -> dict[str, Any]:
    """What the app's alerts page shows as the webhook's body."""
    return {"text": "New issue in web: <https://opbeat.example/orgs/…/issues/12/|ZeroDivisionError: division by zero>",
            "attachments": [{"title": "ZeroDivisionError: division by zero", "title_link": "https://…", "fields": []}],
            "opbeat": {"kind": "new", "issue_id": 12, "url": "https://…"}}  # fmt: skip
