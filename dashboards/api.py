"""The REST API for releases (list, detail) and its OpenAPI document.

Session-authenticated (Django REST framework's defaults in settings): a logged-in member reads the
releases of their organization's apps; another organization's app is a 404, like the pages, as
every id goes through ``accounts.selectors.app_for_member``. Read-only: releases are written by
the intake's token-authenticated ``POST .../releases/`` only.

It lives under ``/rest/v1/`` and not ``/api/``: the WSGI entry point sends ``/api/`` to the
intake's handler, which runs without the session middleware this API needs. The OpenAPI
document is written out here rather than generated, so it says exactly what the views return.
"""

from __future__ import annotations

from django.http import Http404
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.selectors import app_for_member
from processing.models import Commit, CommitFile, Release

from .selectors import text_param

PAGE_SIZE = 100
# Release.environment's length: a longer value matches nothing.
ENVIRONMENT_MAX = 100


class CommitFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = CommitFile
        fields = ["path", "status", "hunks"]


class CommitSerializer(serializers.ModelSerializer):
    files = CommitFileSerializer(many=True, read_only=True)

    class Meta:
        model = Commit
        fields = ["sha", "author_name", "author_email", "message", "timestamp", "files"]


class ReleaseSerializer(serializers.ModelSerializer):
    commit_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Release
        fields = ["id", "version", "environment", "branch", "status", "deployed_at", "deploy_order", "commit_count"]


# Every method reaches the view, so the app is resolved first (a stranger gets the same 404 for
# any method, as on the pages), and only then is anything but GET refused.
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _read_only(request: Request) -> Response | None:
    if request.method in ("GET", "HEAD"):
        return None
    return Response({"detail": "This API is read-only."}, status=405, headers={"Allow": "GET, HEAD"})


@api_view(_METHODS)
def release_list(request: Request, org_id: str, app_id: str) -> Response:
    from django.db.models import Count

    app = app_for_member(request.user, org_id, app_id)
    if (refused := _read_only(request)) is not None:
        return refused
    releases = Release.objects.filter(app=app)
    environment = request.query_params.get("environment")
    if environment is not None:
        releases = releases.filter(environment=text_param(environment, limit=ENVIRONMENT_MAX))
    releases = releases.annotate(commit_count=Count("release_commits")).order_by("-deployed_at", "-deploy_order")
    return Response({"results": ReleaseSerializer(releases[:PAGE_SIZE], many=True).data})


@api_view(_METHODS)
def release_detail(request: Request, org_id: str, app_id: str, release_id: int) -> Response:
    from django.db.models import Count

    app = app_for_member(request.user, org_id, app_id)
    release = (
        Release.objects.filter(
            app=app,
            pk=release_id,
        )
        .annotate(commit_count=Count("release_commits"))
        .first()
    )
    if release is None:
        raise Http404("No such release")
    if (refused := _read_only(request)) is not None:
        return refused
    commits = Commit.objects.filter(release_commits__release=release).order_by("release_commits__position").prefetch_related("files")
    return Response({**ReleaseSerializer(release).data, "commits": CommitSerializer(commits, many=True).data})


_HUNK = {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4,
         "description": "[old_start, old_lines, new_start, new_lines] as git diff -U0 reports it"}  # fmt: skip
_RELEASE = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "version": {"type": "string"},
        "environment": {"type": "string"},
        "branch": {"type": "string"},
        "status": {"type": "string"},
        "deployed_at": {"type": "string", "format": "date-time"},
        "deploy_order": {"type": "integer", "description": "order of first report within the environment"},
        "commit_count": {"type": "integer"},
    },
}
_COMMIT = {
    "type": "object",
    "properties": {
        "sha": {"type": "string"},
        "author_name": {"type": "string"},
        "author_email": {"type": "string"},
        "message": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "files": {"type": "array", "items": {"type": "object", "properties": {
            "path": {"type": "string"}, "status": {"type": "string"}, "hunks": {"type": "array", "items": _HUNK}}}},
    },
}  # fmt: skip
_IDS = [
    {"name": "org_id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Organization public id"},
    {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "App public id"},
]
OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "Opbeat Server releases API", "version": "1",
             "description": "Read the releases of an app. Log in to the dashboard first: the API uses its session."},
    "paths": {
        "/rest/v1/orgs/{org_id}/apps/{app_id}/releases/": {
            "get": {
                "operationId": "releases_list",
                "summary": "The app's releases, newest deploy first (at most 100)",
                "parameters": [*_IDS, {"name": "environment", "in": "query", "required": False, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "Releases", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"results": {"type": "array", "items": {"$ref": "#/components/schemas/Release"}}}}}}},
                    "403": {"description": "Not logged in"},
                    "404": {"description": "No such app for this member"},
                },
            }
        },
        "/rest/v1/orgs/{org_id}/apps/{app_id}/releases/{release_id}/": {
            "get": {
                "operationId": "releases_detail",
                "summary": "One release with its commits, files and hunks",
                "parameters": [*_IDS, {"name": "release_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {
                    "200": {"description": "The release", "content": {"application/json": {"schema": {
                        "allOf": [{"$ref": "#/components/schemas/Release"}, {"type": "object", "properties": {
                            "commits": {"type": "array", "items": {"$ref": "#/components/schemas/Commit"}}}}]}}}},
                    "403": {"description": "Not logged in"},
                    "404": {"description": "No such release for this member"},
                },
            }
        },
    },
    "components": {
        "schemas": {"Release": _RELEASE, "Commit": _COMMIT},
        "securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "sessionid"}},
    },
    "security": [{"session": []}],
}  # fmt: skip


@api_view(["GET"])
@permission_classes([AllowAny])
def openapi_schema(request: Request) -> Response:
    return Response(OPENAPI)
