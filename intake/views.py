"""The Opbeat Intake API v1 endpoints. Thin: each step is a function in its own module, and
every refusal is an exception turned into a JSON answer by ``errors.error_response``.

The request path never writes the database: authenticate (cached), rate-limit (Redis), read and
cap the body, parse and validate (pure), publish to the queue, answer 202 with the URL of the
event's page.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import queue
from .auth import AppCredentials, app_authenticate
from .body import request_body_read
from .errors import AppNotFound, MethodNotAllowed, error_response, json_response
from .protocols import opbeat
from .ratelimit import app_rate_limit


def intake_endpoint(*, method: str, what: str):
    """The part every intake endpoint shares: the method check, then the app and its token
    (``auth.app_authenticate``); the handler gets the authenticated app. Any exception raised on
    the way becomes a JSON answer in one place (``errors.error_response``), counted against the
    app once it is known."""

    def decorate(handler):
        @csrf_exempt
        @functools.wraps(handler)
        def view(request: HttpRequest, organization_id: str, app_id: str) -> HttpResponse:
            app = None
            try:
                if request.method != method and not (method == "GET" and request.method == "HEAD"):
                    raise MethodNotAllowed(f"{request.method} is not allowed here; {method} {what}", allow=method)
                app = app_authenticate(
                    organization_public_id=organization_id,
                    app_public_id=app_id,
                    authorization=request.META.get("HTTP_AUTHORIZATION", ""),
                )
                return handler(request, app=app, organization_id=organization_id, app_id=app_id)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer, in one place
                return error_response(exc, app_pk=app.pk if app is not None else None)

        return view

    return decorate


def body_admit(request: HttpRequest, *, app: AppCredentials, max_bytes: int) -> bytes:
    """Count the body against the app's quota (429 past it), then read it, with a Content-Length
    or chunked, capped while streaming (413 past ``max_bytes``) and within the time limit (408)."""
    app_rate_limit(app_pk=app.pk, events_per_minute=app.events_per_minute)
    return request_body_read(
        request.META, max_bytes=max_bytes, seconds=settings.OPBEAT_LIMITS["body_read_seconds"]
    )


def accepted_response(payload: dict, *, location: str) -> HttpResponse:
    response = json_response({**payload, "location": location}, status=202)
    response["Location"] = location
    return response


@intake_endpoint(method="POST", what="an error")
def errors_create(request: HttpRequest, *, app: AppCredentials, organization_id: str, app_id: str) -> HttpResponse:
    limits = settings.OPBEAT_LIMITS
    body = body_admit(request, app=app, max_bytes=limits["max_compressed_bytes"])
    event = opbeat.error_parse(
        body=body,
        content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
        max_bytes=limits["max_error_bytes"],
        max_json_depth=limits["max_json_depth"],
        max_frames=limits["max_frames"],
        now=datetime.now(tz=timezone.utc),
    )
    envelope = queue.envelope_new(kind="error", app_id=app.pk, received_at=time.time(), data=event)
    queue.events_enqueue([envelope])
    event_id = envelope["event_id"]
    location = f"{settings.BASE_URL}/orgs/{organization_id}/apps/{app_id}/events/{event_id}/"
    return accepted_response({"id": event_id}, location=location)


@csrf_exempt
def api_not_found(request: HttpRequest, rest: str) -> HttpResponse:
    # Agents read JSON, not Django's HTML 404 page.
    return error_response(AppNotFound(f"no API endpoint at /api/v1/{rest}"), app_pk=None)
