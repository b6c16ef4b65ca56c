"""``POST .../transactions/``: the performance data of the original ``opbeat`` module and of
``opbeat-agent`` (``agent/PROTOCOL.md``). Same path as errors: authenticate, rate-limit (a body
counts as one event), read and cap the body while streaming, parse both dialects into one compact
form (``protocols.transactions``), publish one ``"transactions"`` envelope, answer 202.

The original module sends up to 10 MB raw (2 MB compressed) a minute from a busy process: the
caps are ``max_transactions_compressed_bytes`` and ``max_transactions_bytes``; the queue gets
sketches, not the raw durations, so the message stays a few KB.

This module never touches the database.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import queue
from .auth import app_authenticate
from .errors import MethodNotAllowed, error_response, json_response
from .protocols import opbeat, transactions
from .ratelimit import app_rate_limit


@csrf_exempt
def transactions_create(request: HttpRequest, organization_id: str, app_id: str) -> HttpResponse:
    app_pk = None
    try:
        if request.method != "POST":
            raise MethodNotAllowed(f"{request.method} is not allowed here; POST transactions")
        app = app_authenticate(
            organization_public_id=organization_id,
            app_public_id=app_id,
            authorization=request.META.get("HTTP_AUTHORIZATION", ""),
        )
        app_pk = app.pk
        app_rate_limit(app_pk=app.pk, events_per_minute=app.events_per_minute)
        limits = settings.OPBEAT_LIMITS
        try:
            content_length = int(request.META.get("CONTENT_LENGTH") or "")
        except ValueError:
            content_length = None
        body = opbeat.body_read(
            stream=request,
            content_length=content_length,
            max_bytes=limits["max_transactions_compressed_bytes"],
        )
        data = transactions.transactions_parse(
            body=body,
            content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
            max_bytes=limits["max_transactions_bytes"],
        )
        envelope = queue.envelope_new(kind="transactions", app_id=app.pk, received_at=time.time(), data=data)
        queue.events_enqueue([envelope])
    except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer, in one place
        return error_response(exc, app_pk=app_pk)
    location = f"{settings.BASE_URL}/orgs/{organization_id}/apps/{app_id}/performance/"
    accepted = {
        "id": envelope["event_id"],
        "location": location,
        "groups": len(data["groups"]),
        "transactions": sum(group["count"] for group in data["groups"]),
        "traces": len(data["traces"]),
    }
    response = json_response(accepted, status=202)
    response["Location"] = location
    return response
