"""The dashboard's URLs (namespace ``dashboards``), as agreed in the URL map.

Event ids in URLs come in two spellings: the intake's ``Location`` header carries 32 hex digits
(``uuid.hex``), people paste the hyphenated form. Django's ``uuid`` converter takes only the
hyphenated one, so both are accepted here and reversed to the intake's spelling.
"""

import uuid

from django.urls import path, register_converter

from . import aliases, performance_views, views
from . import api as releases_api, releases


class EventIdConverter:
    regex = r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value) -> str:
        return uuid.UUID(str(value)).hex


register_converter(EventIdConverter, "event_id")

app_name = "dashboards"

urlpatterns = [
    path("orgs/<str:org_id>/apps/<str:app_id>/", views.issue_list, name="issue_list"),
    path("orgs/<str:org_id>/apps/<str:app_id>/issues/<int:issue_id>/", views.issue_detail, name="issue_detail"),
    path(
        "orgs/<str:org_id>/apps/<str:app_id>/issues/<int:issue_id>/events/<event_id:event_id>/",
        views.issue_detail,
        name="issue_event",
    ),
    path("orgs/<str:org_id>/apps/<str:app_id>/events/<event_id:event_id>/", views.event_redirect, name="event_redirect"),
    path("orgs/<str:org_id>/apps/<str:app_id>/issues/<int:issue_id>/status/", views.issue_status, name="issue_status"),
    path("orgs/<str:org_id>/apps/<str:app_id>/performance/", performance_views.performance_overview, name="performance"),
    path(
        "orgs/<str:org_id>/apps/<str:app_id>/performance/<int:transaction_id>/",
        performance_views.transaction_detail,
        name="transaction_detail",
    ),
    path("orgs/<str:org_id>/apps/<str:app_id>/releases/", releases.release_list, name="release_list"),
    path("orgs/<str:org_id>/apps/<str:app_id>/releases/<int:release_id>/", releases.release_detail, name="release_detail"),
    path(
        "orgs/<str:org_id>/apps/<str:app_id>/releases/<int:release_id>/delete/",
        releases.release_delete_view,
        name="release_delete",
    ),
    path("orgs/<str:org_id>/apps/<str:app_id>/alerts/", releases.alert_settings, name="alert_settings"),
    path("verify-alias/<str:token>/", aliases.alias_verify_view, name="alias_verify"),
    path("orgs/<str:org_id>/apps/<str:app_id>/issues/<int:issue_id>/assign/", releases.issue_assign_view, name="issue_assign"),
    path(
        "orgs/<str:org_id>/apps/<str:app_id>/issues/<int:issue_id>/resolve-next-release/",
        releases.issue_resolve_next_view,
        name="issue_resolve_next",
    ),
    # The REST API (session auth; not under /api/, which is the intake's middleware-free handler).
    path("rest/v1/orgs/<str:org_id>/apps/<str:app_id>/releases/", releases_api.release_list, name="api_release_list"),
    path(
        "rest/v1/orgs/<str:org_id>/apps/<str:app_id>/releases/<int:release_id>/",
        releases_api.release_detail,
        name="api_release_detail",
    ),
    path("rest/v1/openapi.json", releases_api.openapi_schema, name="api_openapi"),
]
