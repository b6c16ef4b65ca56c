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
from datetime import datetime, timezone

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from . import queue
from .auth import AppCredentials
from .protocols import transactions
from .views import accepted_response, body_admit, intake_endpoint


@intake_endpoint(method="POST", what="transactions")
def transactions_create(
    request: HttpRequest, *, app: AppCredentials, organization_id: str, app_id: str
) -> HttpResponse:
    limits = settings.OPBEAT_LIMITS
    body = body_admit(request, app=app, max_bytes=limits["max_transactions_compressed_bytes"])
    data = transactions.transactions_parse(
        body=body,
        content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
        max_bytes=limits["max_transactions_bytes"],
        now=datetime.now(tz=timezone.utc),
    )
    envelope = queue.envelope_new(kind="transactions", app_id=app.pk, received_at=time.time(), data=data)
    queue.events_enqueue([envelope])
    return accepted_response(
        {
            "id": envelope["event_id"],
            "groups": len(data["groups"]),
            "transactions": sum(group["count"] for group in data["groups"]),
            "traces": len(data["traces"]),
        },
        location=f"{settings.BASE_URL}/orgs/{organization_id}/apps/{app_id}/performance/",
    )
