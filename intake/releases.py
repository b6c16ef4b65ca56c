"""The intake's releases endpoints (token-authenticated, like errors):

- ``POST .../releases/``: a deploy, in the original tracker's shape or ours
  (``intake.protocols.releases``); published to the ``default`` queue for the worker's
  ``processing.tasks.release_store`` and answered 202. Re-sending is idempotent (the worker keys
  releases by app, environment and version, commits by sha).
- ``GET .../releases/latest/?environment=``: the newest release and its head commit, so
  ``opbeat-agent release`` knows where the previous deploy stopped.

The POST never touches the database (auth is cached); the GET reads one release.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import queue
from .auth import app_authenticate
from .errors import IntakeError, error_response, json_response
from .protocols import opbeat, releases as protocol
from .ratelimit import app_rate_limit
from .views import _content_length

RELEASES_TASK = "processing.tasks.release_store"


class ReleaseMethodNotAllowed(IntakeError):
    status = 405


def _authenticate(request: HttpRequest, organization_id: str, app_id: str):
    return app_authenticate(
        organization_public_id=organization_id,
        app_public_id=app_id,
        authorization=request.META.get("HTTP_AUTHORIZATION", ""),
    )


@csrf_exempt
def releases_create(request: HttpRequest, organization_id: str, app_id: str) -> HttpResponse:
    app_pk = None
    try:
        if request.method != "POST":
            raise ReleaseMethodNotAllowed(f"{request.method} is not allowed here; POST a release")
        app = _authenticate(request, organization_id, app_id)
        app_pk = app.pk
        app_rate_limit(app_pk=app.pk, events_per_minute=app.events_per_minute)
        max_bytes = settings.OPBEAT_LIMITS["max_release_bytes"]
        body = opbeat.body_read(stream=request, content_length=_content_length(request), max_bytes=max_bytes)
        release = protocol.release_parse(
            body=body,
            content_type=request.META.get("CONTENT_TYPE", ""),
            content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
            max_bytes=max_bytes,
            now=datetime.now(tz=timezone.utc),
        )
        envelope = queue.envelope_new(kind="release", app_id=app.pk, received_at=time.time(), data=release)
        queue.task_message_publish(task=RELEASES_TASK, args=[envelope], queue=queue.DEFAULT_QUEUE)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer, in one place
        response = error_response(exc, app_pk=app_pk)
        if response.status_code == 405:
            response["Allow"] = "POST"
        return response
    location = f"{settings.BASE_URL}/orgs/{organization_id}/apps/{app_id}/releases/"
    response = json_response(
        {"version": release["version"], "environment": release["environment"], "commits": len(release["commits"]),
         "location": location},
        status=202,
    )  # fmt: skip
    response["Location"] = location
    return response


@csrf_exempt
def release_latest(request: HttpRequest, organization_id: str, app_id: str) -> HttpResponse:
    """``{"release": null}`` or ``{"release": {"version", "environment", "deployed_at", "head_commit"}}``."""
    from processing.models import Release, ReleaseCommit

    app_pk = None
    try:
        if request.method not in ("GET", "HEAD"):
            raise ReleaseMethodNotAllowed(f"{request.method} is not allowed here; GET the latest release")
        app = _authenticate(request, organization_id, app_id)
        app_pk = app.pk
        environment = request.GET.get("environment", "")[: protocol.MAX_ENVIRONMENT_CHARS]
        release = (
            Release.objects.filter(app_id=app.pk, environment=environment).order_by("-deploy_order").first()
        )
    except Exception as exc:  # noqa: BLE001 - see releases_create
        response = error_response(exc, app_pk=app_pk)
        if response.status_code == 405:
            response["Allow"] = "GET"
        return response
    if release is None:
        return json_response({"release": None}, status=200)
    head = (
        ReleaseCommit.objects.filter(release=release).order_by("position").values_list("commit__sha", flat=True).first()
    )
    return json_response(
        {
            "release": {
                "version": release.version,
                "environment": release.environment,
                "deployed_at": release.deployed_at.isoformat(),
                # The original tracker posted only a rev: that is the head commit.
                "head_commit": head or release.version,
            }
        },
        status=200,
    )
