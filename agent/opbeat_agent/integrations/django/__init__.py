"""Django: add ``"opbeat_agent.integrations.django"`` to ``INSTALLED_APPS`` and the ``OPBEAT = {...}``
setting (the original module's keys work); the app puts ``OpbeatMiddleware`` at the top of
``MIDDLEWARE`` itself unless it is already listed.

Unhandled errors arrive through ``got_request_exception`` with the request: method, URL, scrubbed
headers, cookies, query string, capped body, the user (id, username, email) when
``django.contrib.auth`` is there, and the template's lines when a template failed.
"""

from __future__ import annotations

from .. import DidNotEnable

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise DidNotEnable("Django is not installed: pip install opbeat-agent[django]") from exc

from .middleware import OpbeatMiddleware  # noqa: E402
from .setup import django_client  # noqa: E402

__all__ = ["OpbeatMiddleware", "django_client"]
