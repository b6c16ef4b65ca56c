"""Every way the intake can refuse a request, and the one place that turns them into answers.

Each refusal is an exception carrying its HTTP status, a reason (the rejection counter's
vocabulary, shown on the dashboard as "dropped: rate limited 1,204") and a message a person can
read. ``error_response`` maps any exception raised on the request path to a JSON answer, counts
it against the app when the app is known and logs it, once per app and reason a minute
(``rejections.rejection_count``; the Bugsink / old Sentry ``StoreView`` habit: views raise, one
function decides the status).

This module never touches the database.
"""

from __future__ import annotations

import logging

import orjson
from django.http import HttpResponse

from .protocols.opbeat import ProtocolError
from .queue import QueueUnavailable
from .rejections import rejection_count

logger = logging.getLogger(__name__)


class IntakeError(Exception):
    status = 400
    reason = "invalid"

    def __init__(self, message: str, *, app_pk: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Set when the app is known, so the refusal is counted against it.
        self.app_pk = app_pk


class MethodNotAllowed(IntakeError):
    status = 405
    reason = "invalid"

    def __init__(self, message: str, *, allow: str = "POST", app_pk: int | None = None) -> None:
        super().__init__(message, app_pk=app_pk)
        self.allow = allow


class Unauthorized(IntakeError):
    status = 401
    reason = "unauthorized"


class Forbidden(IntakeError):
    status = 403
    reason = "forbidden"


class AppNotFound(IntakeError):
    status = 404
    reason = "not_found"


class RateLimited(IntakeError):
    status = 429
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, app_pk: int | None = None) -> None:
        super().__init__(message, app_pk=app_pk)
        self.retry_after = retry_after


class BodyTimeout(IntakeError):
    """The body did not arrive within ``OPBEAT_LIMITS["body_read_seconds"]`` (``body.request_body_read``)."""

    status = 408
    reason = "timeout"


class LengthRequired(IntakeError):
    """A chunked body on a server that cannot say where it ends."""

    status = 411
    reason = "invalid"


class DatabaseUnavailable(IntakeError):
    """The database is down and this app was never seen by the cache: we cannot check its token."""

    status = 503
    reason = "database_unavailable"


def json_response(payload: dict, *, status: int) -> HttpResponse:
    # orjson and a bare HttpResponse: JsonResponse's json.dumps costs more on the hot path.
    return HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")


def error_response(exc: Exception, *, app_pk: int | None) -> HttpResponse:
    """The JSON answer for any exception raised while taking an event; counted by reason."""
    headers: dict[str, str] = {}
    if isinstance(exc, IntakeError):
        status, reason, message = exc.status, exc.reason, exc.message
        app_pk = exc.app_pk if exc.app_pk is not None else app_pk
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, MethodNotAllowed):
            headers["Allow"] = exc.allow
    elif isinstance(exc, ProtocolError):
        status, reason, message = exc.status, exc.reason, exc.message
    elif isinstance(exc, QueueUnavailable):
        status, reason, message = 503, "queue_unavailable", "the event queue is unreachable; retry later"
        logger.warning("intake: queue unavailable: %s", exc)
    else:
        # A bug of ours: the agent still gets JSON and a status it treats as a failure, and we
        # get the traceback in the log.
        logger.exception("intake: unexpected error")
        status, reason, message = 500, "internal_error", "internal error while taking the event"
    if status == 503:
        # Both causes (broker, database) are outages that usually pass within seconds.
        headers.setdefault("Retry-After", "30")
    rejection_count(app_pk=app_pk, reason=reason, status=status, message=message)
    response = json_response({"error": message}, status=status)
    for key, value in headers.items():
        response[key] = value
    return response
