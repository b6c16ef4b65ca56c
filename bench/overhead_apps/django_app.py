"""The benchmark's Django project in one module: ``GET /report/<int:customer_id>/`` runs three
queries through Django's database connection (so through its ``execute_wrapper`` hooks, as the
ORM's queries do) and renders a Django template. ``gunicorn bench.overhead_apps.django_app:application``
with ``BENCH_AGENT`` set."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from . import common

HERE = Path(__file__).resolve().parent

installed = ["django.contrib.contenttypes", "django.contrib.auth"]
middleware = ["django.middleware.common.CommonMiddleware"]
extra: dict = {}
if common.AGENT == "opbeat":
    installed.append("opbeat_agent.integrations.django")
    extra["OPBEAT"] = common.opbeat_config()
elif common.AGENT == "elastic":
    installed.append("elasticapm.contrib.django")
    middleware.insert(0, "elasticapm.contrib.django.middleware.TracingMiddleware")
    extra["ELASTIC_APM"] = common.elastic_config()

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=installed,
    MIDDLEWARE=middleware,
    # One connection per worker for the process's life, like the Flask app's.
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": common.DATABASE, "CONN_MAX_AGE": None}},
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [str(HERE / "templates")]}],
    USE_TZ=True,
    LOGGING_CONFIG=None,
    **extra,
)

if common.AGENT == "sentry":
    common.sentry_init()

import django  # noqa: E402

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402


def report(request, customer_id: int):
    with connection.cursor() as cursor:

        def execute(sql: str, params: tuple):
            cursor.execute(sql.replace("?", "%s"), params)
            return cursor

        context = common.report_rows(execute, customer_id % 100)
    return render(request, "report.html", context)


urlpatterns = [path("report/<int:customer_id>/", report)]
application = get_wsgi_application()
