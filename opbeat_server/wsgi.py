"""The WSGI entry point: one application serving the dashboards and the intake.

Requests under ``/api/`` go to a Django handler without middleware. The intake's views need
none of it (no sessions, no CSRF: token auth; no host-based URLs: Location is built from
BASE_URL), and measured here the default stack cost ~140 µs of the intake's ~560 µs of CPU
per request (bench/intake). Everything else goes through the full stack.
"""

import os

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opbeat_server.settings")


class IntakeHandler(WSGIHandler):
    """Django's WSGI handler with an empty middleware chain."""

    def load_middleware(self, is_async=False):
        # The attributes BaseHandler.load_middleware sets, for an empty settings.MIDDLEWARE.
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response)


def application_build():
    site = get_wsgi_application()  # runs django.setup()
    intake = IntakeHandler()

    def application(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/api/"):
            return intake(environ, start_response)
        return site(environ, start_response)

    return application


application = application_build()
