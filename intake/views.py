"""The Opbeat Intake API v1 endpoints. Thin: each step is a function in its own module, and
every refusal is an exception turned into a JSON answer by ``errors.error_response``.

The request path never writes the database: authenticate (cached), rate-limit (Redis), read and
cap the body, parse and validate (pure), publish to the queue, answer 202 with the URL of the
event's page.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import queue
from .auth import app_authenticate
from .errors import AppNotFound, MethodNotAllowed, error_response, json_response
from .protocols import opbeat
from .ratelimit import app_rate_limit


def _content_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


@csrf_exempt
def errors_create(request: HttpRequest, organization_id: str, app_id: str) -> HttpResponse:
    app_pk = None
    try:
        if request.method != "POST":
            raise MethodNotAllowed(f"{request.method} is not allowed here; POST an error")
        app = app_authenticate(
            organization_public_id=organization_id,
            app_public_id=app_id,
            authorization=request.META.get("HTTP_AUTHORIZATION", ""),
        )
        app_pk = app.pk
        app_rate_limit(app_pk=app.pk, events_per_minute=app.events_per_minute)
        limits = settings.OPBEAT_LIMITS
        body = opbeat.body_read(
            stream=request,
            content_length=_content_length(request),
            max_bytes=limits["max_compressed_bytes"],
        )
        event = opbeat.error_parse(
            body=body,
            content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
            max_bytes=limits["max_error_bytes"],
            max_json_depth=limits["max_json_depth"],
            max_frames=limits["max_frames"],
        )
        envelope = queue.envelope_new(kind="error", app_id=app.pk, received_at=time.time(), data=event)
        queue.events_enqueue([envelope])
    except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer, in one place
        return error_response(exc, app_pk=app_pk)
    event_id = envelope["event_id"]
    location = f"{settings.BASE_URL}/orgs/{organization_id}/apps/{app_id}/events/{event_id}/"
    response = json_response({"id": event_id, "location": location}, status=202)
    response["Location"] = location
    return response


@csrf_exempt
def api_not_found(request: HttpRequest, rest: str) -> HttpResponse:
    # Agents read JSON, not Django's HTML 404 page.
    return error_response(AppNotFound(f"no API endpoint at /api/v1/{rest}"), app_pk=None)
