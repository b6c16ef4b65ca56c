"""The dashboard's URLs (namespace ``dashboards``), as agreed in the URL map.

Event ids in URLs come in two spellings: the intake's ``Location`` header carries 32 hex digits
(``uuid.hex``), people paste the hyphenated form. Django's ``uuid`` converter takes only the
hyphenated one, so both are accepted here and reversed to the intake's spelling.
"""

import uuid

from django.urls import path, register_converter

from . import performance_views, views


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
]
