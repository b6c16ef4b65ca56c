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

from . import queue
from .auth import AppCredentials
from .errors import json_response
from .protocols import releases as protocol
from .views import accepted_response, body_admit, intake_endpoint

RELEASES_TASK = "processing.tasks.release_store"


@intake_endpoint(method="POST", what="a release")
def releases_create(request: HttpRequest, *, app: AppCredentials, organization_id: str, app_id: str) -> HttpResponse:
    max_bytes = settings.OPBEAT_LIMITS["max_release_bytes"]
    body = body_admit(request, app=app, max_bytes=max_bytes)
    release = protocol.release_parse(
        body=body,
        content_type=request.META.get("CONTENT_TYPE", ""),
        content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
        max_bytes=max_bytes,
        now=datetime.now(tz=timezone.utc),
    )
    envelope = queue.envelope_new(kind="release", app_id=app.pk, received_at=time.time(), data=release)
    queue.task_message_publish(task=RELEASES_TASK, args=[envelope], queue=queue.DEFAULT_QUEUE)
    return accepted_response(
        {"version": release["version"], "environment": release["environment"], "commits": len(release["commits"])},
        location=f"{settings.BASE_URL}/orgs/{organization_id}/apps/{app_id}/releases/",
    )


@intake_endpoint(method="GET", what="the latest release")
def release_latest(request: HttpRequest, *, app: AppCredentials, organization_id: str, app_id: str) -> HttpResponse:
    """``{"release": null}`` or ``{"release": {"version", "environment", "deployed_at", "head_commit"}}``."""
    from processing.models import Release, ReleaseCommit

    # Stored environments never contain NUL (the parser drops it), and psycopg refuses it in a query.
    environment = request.GET.get("environment", "").replace("\x00", "")[: protocol.MAX_ENVIRONMENT_CHARS]
    release = Release.objects.filter(app_id=app.pk, environment=environment).order_by("-deploy_order").first()
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
