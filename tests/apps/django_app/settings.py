"""An example Django project using the agent the way a user would: the app in INSTALLED_APPS and
an ``OPBEAT`` setting (the original module's keys); the middleware is left out on purpose, the
agent's app inserts it. Runs in its own process (see tests/apps/test_django_app.py)."""

import json
import os

SECRET_KEY = "example-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
ROOT_URLCONF = "tests.apps.django_app.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "opbeat_agent.integrations.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(os.path.dirname(__file__), "templates")],
        # Template debug info is what lets the agent say which template line failed.
        "OPTIONS": {"debug": True},
    }
]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
OPBEAT = {
    "ORGANIZATION_ID": "org1",
    "APP_ID": "app1",
    "SECRET_TOKEN": "sekrit-token",
    "SERVERS": [os.environ.get("EXAMPLE_INTAKE_URL", "http://127.0.0.1:9")],
    "RELEASE": "2026.11.1",
    "ENVIRONMENT": "test",
    # The recording transport: events stay in memory for the driver to print.
    "TRANSPORT": "opbeat_agent.transport.MemoryTransport",
}
# tests/apps/test_live_intake.py points the same project at the real intake with a real app's
# ids and token (and the HTTP transport): {"ORGANIZATION_ID": ..., "SERVERS": [...], ...}.
if os.environ.get("EXAMPLE_OPBEAT"):
    OPBEAT = {**{k: v for k, v in OPBEAT.items() if k != "TRANSPORT"}, **json.loads(os.environ["EXAMPLE_OPBEAT"])}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"opbeat": {"class": "opbeat_agent.OpbeatHandler", "level": "ERROR"}},
    # django.request logs every 500 with the exception: the same one got_request_exception already
    # sent, so this also shows it is sent once.
    "loggers": {"django.request": {"handlers": ["opbeat"], "level": "ERROR", "propagate": False}},
}
