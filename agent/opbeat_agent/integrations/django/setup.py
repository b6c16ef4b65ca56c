"""Wiring the agent into Django: the client from ``settings.OPBEAT``, the middleware inserted at the
top of ``MIDDLEWARE`` when missing, the ``got_request_exception`` receiver, and a span per ORM
query through Django's documented ``execute_wrapper`` hook.

``django_setup`` runs from the app's ``ready()``, before Django builds its request handler, which
is why inserting the middleware there takes effect. It never raises: a bad setting disables the
agent with one log line (and ``manage.py opbeat check`` says what is wrong).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Optional

from django.conf import settings
from django.core.signals import got_request_exception
from django.db.backends.signals import connection_created

from ... import get_client, set_client
from ...client import Client, client_from_settings
from ...tracing import query_call, transaction_current
from .request import http_from_django, template_from_exception, user_from_django

logger = logging.getLogger("opbeat_agent.django")

MIDDLEWARE_PATH = "opbeat_agent.integrations.django.OpbeatMiddleware"
_MIDDLEWARE_PATHS = {MIDDLEWARE_PATH, "opbeat_agent.integrations.django.middleware.OpbeatMiddleware"}

_lock = threading.Lock()
_client: Optional[Client] = None


def django_client() -> Client:
    """The client built from ``settings.OPBEAT`` (once per process)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = client_from_settings(
                    settings=getattr(settings, "OPBEAT", None) or {}, settings_name="OPBEAT setting"
                )
                if get_client() is None:
                    set_client(_client)
    return _client


def django_client_reset() -> None:
    """Forget the client, so the next ``django_client()`` reads the settings again (tests,
    ``override_settings``)."""
    global _client
    with _lock:
        old, _client = _client, None
    if old is not None:
        if get_client() is old:
            set_client(None)
        old.close(timeout=0)


def middleware_listed() -> bool:
    return any(path in _MIDDLEWARE_PATHS for path in getattr(settings, "MIDDLEWARE", None) or ())


def django_setup() -> None:
    try:
        client = django_client()
        if client.config.django_auto_insert_middleware and not middleware_listed():
            # First, so it sees the whole request, including what other middleware does.
            settings.MIDDLEWARE = [MIDDLEWARE_PATH, *(settings.MIDDLEWARE or ())]
        got_request_exception.connect(_on_request_exception, dispatch_uid="opbeat_agent.django")
        if client.reporter is not None:
            connection_created.connect(_on_connection_created, dispatch_uid="opbeat_agent.django.db")
            from django.db import connections

            # Connections opened before the app was ready (rare: a query in another app's
            # ready()) miss connection_created; Django < 4.1 has no initialized_only and opens none.
            try:
                opened = connections.all(initialized_only=True)
            except TypeError:
                opened = []
            for connection in opened:
                _execute_wrapper_install(connection)
    except Exception:  # noqa: BLE001 - the app must start even if the agent cannot
        logger.exception("opbeat_agent: Django integration not enabled")


def _on_request_exception(sender: Any, request: Any = None, **kwargs: Any) -> None:
    exc_info = sys.exc_info()
    if exc_info[1] is None:
        # Sent from a worker thread for an async view (no exception in flight there): the
        # middleware's process_exception has it.
        return
    request_exception_capture(request, exc_info)


def request_exception_capture(request: Any, exc_info: tuple) -> None:
    """Capture an exception raised while handling ``request``, with what the request was."""
    client = django_client()
    if not client.active:
        return
    data: dict = {}
    if request is not None:
        for name, reader in (
            ("http", lambda: http_from_django(request, client.config)),
            ("user", lambda: user_from_django(request)),
        ):
            try:
                value = reader()
            except Exception:  # noqa: BLE001 - describing the request is best effort; the error is what matters
                logger.debug("opbeat_agent: could not read the request's %s", name, exc_info=True)
                continue
            if value:
                data[name] = value
    template = template_from_exception(exc_info[1])
    if template:
        data["template"] = template
    client.capture_exception(exc_info, data=data)


def _query_span(execute: Any, sql: str, params: Any, many: bool, context: dict) -> Any:
    """Django's documented hook around every query a connection runs (``execute_wrapper``):
    a span per query while a transaction is recording, a straight call otherwise."""
    if transaction_current() is None:
        return execute(sql, params, many, context)
    vendor = getattr(context.get("connection"), "vendor", "sql")
    kind = _KINDS.get(vendor)
    if kind is None:
        kind = _KINDS[vendor] = f"db.{vendor}.sql"
    return query_call(kind, sql, execute, sql, params, many, context)


_KINDS: dict = {}


def _execute_wrapper_install(connection: Any) -> None:
    wrappers = getattr(connection, "execute_wrappers", None)
    if wrappers is not None and _query_span not in wrappers:
        wrappers.append(_query_span)


def _on_connection_created(sender: Any, connection: Any = None, **kwargs: Any) -> None:
    if connection is not None:
        _execute_wrapper_install(connection)
