from django.urls import re_path

from .transactions import transactions_create

from . import releases, views

urlpatterns = [
    # The trailing slash is optional: an agent configured without it must not get a redirect
    # (clients do not replay a POST body across a 301).
    re_path(
        r"^organizations/(?P<organization_id>[0-9A-Za-z_-]{1,64})/apps/(?P<app_id>[0-9A-Za-z_-]{1,64})/errors/?$",
        views.errors_create,
        name="intake_errors",
    ),
    re_path(
        r"^organizations/(?P<organization_id>[0-9A-Za-z_-]{1,64})/apps/(?P<app_id>[0-9A-Za-z_-]{1,64})/releases/?$",
        releases.releases_create,
        name="intake_releases",
    ),
    re_path(
        r"^organizations/(?P<organization_id>[0-9A-Za-z_-]{1,64})/apps/(?P<app_id>[0-9A-Za-z_-]{1,64})/releases/latest/?$",
        releases.release_latest,
        name="intake_release_latest",
    ),
    re_path(
        r"^organizations/(?P<organization_id>[0-9A-Za-z_-]{1,64})/apps/(?P<app_id>[0-9A-Za-z_-]{1,64})/transactions/?$",
        transactions_create,
        name="intake_transactions",
    ),
    # Keep last: any other path under /api/v1/ answers JSON. Later endpoints go above it.
    re_path(r"^(?P<rest>.*)$", views.api_not_found),
]
