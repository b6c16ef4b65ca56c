"""The alert webhook: one POST of Slack-compatible JSON per alert, to the URL the app's owner set.

Owners are strangers (anyone can sign up), so the URL is checked when it is saved (the Alerts page
shows why it is refused) and again, with the connection pinned to the checked address, every time
the worker calls it (``outbound``): a name's DNS answer may change after it was saved. Unless
``OPBEAT_WEBHOOK_ALLOW_PRIVATE`` is set, only public addresses are called.

This module sends HTTP requests; it never writes the database.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings

from .outbound import TargetRefused, target_post, target_resolve

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5
# The whole call once connected: the worker sends alerts inline, so a slow endpoint delays digests.
WEBHOOK_TOTAL_SECONDS = 10


def webhook_target_refusal(url: str) -> str:
    """Why the worker will not call ``url``, or "" if it may (as of now: the worker checks again)."""
    try:
        target_resolve(url, allow_private=settings.OPBEAT_WEBHOOK_ALLOW_PRIVATE)
    except TargetRefused as refused:
        return str(refused)
    return ""


def webhook_post(*, url: str, payload: dict) -> bool:
    """POST ``payload`` as JSON to ``url``; True on a 2xx answer. Any refusal or failure is logged
    and returns False (a 3xx too: redirects are not followed)."""
    try:
        target = target_resolve(url, allow_private=settings.OPBEAT_WEBHOOK_ALLOW_PRIVATE)
    except TargetRefused as refused:
        logger.warning("alerts: webhook %s not called: %s", url, refused)
        return False
    try:
        status = target_post(
            target,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "opbeat-server-webhook"},
            timeout=WEBHOOK_TIMEOUT_SECONDS,
            total_seconds=WEBHOOK_TOTAL_SECONDS,
        )
    except Exception as exc:  # noqa: BLE001 - a chat service being down must not stop the email alerts
        logger.warning("alerts: webhook %s failed: %s", url, exc)
        return False
    if 300 <= status < 400:
        logger.warning("alerts: webhook %s failed: answered %s; redirects are not followed", url, status)
        return False
    if not 200 <= status < 300:
        logger.warning("alerts: webhook %s failed: answered %s", url, status)
        return False
    return True
