"""Outgoing HTTP: ``http.client`` (which urllib uses) and ``requests``; urllib3 and httpx have
their own modules.

Span kind ``ext.http`` (``ext.http.requests`` for requests), signature ``METHOD host``, and the
URL without its query string in ``extra.url`` (a query string may carry tokens). A requests call
is one span: the http.client call underneath it is not recorded again. The agent's own sending
thread has no transaction, so the agent never records itself.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from ..tracing import trace, transaction_current
from .base import Instrumentation, first_arg, inside

_SPAN_ATTR = "_opbeat_agent_span"


def url_without_query(url: str) -> str:
    try:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    except ValueError:
        return ""


class HTTPClient(Instrumentation):
    name = "http.client"
    # The span opens when the request line is written and closes when the response has arrived.
    instrument_list = (("http.client", "HTTPConnection.putrequest"), ("http.client", "HTTPConnection.getresponse"))

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        if path.endswith("putrequest"):
            self._begin(instance, args, kwargs)
            return wrapped(*args, **kwargs)
        try:
            return wrapped(*args, **kwargs)
        finally:
            self._end(instance)

    def _begin(self, connection: Any, args: tuple, kwargs: dict) -> None:
        transaction = transaction_current()
        if transaction is None or inside("ext.http"):
            return
        try:
            method = str(first_arg(args, kwargs, "method") or "GET")
            target = str(args[1] if len(args) > 1 else kwargs.get("url", "/"))
            import http.client

            scheme = "https" if isinstance(connection, http.client.HTTPSConnection) else "http"
            host = connection.host
            netloc = f"{host}:{connection.port}" if connection.port else host
            url = target if "://" in target else f"{scheme}://{netloc}{target}"
            span = transaction.span_begin(f"{method} {host}", "ext.http", {"url": url_without_query(url)})
            if span is not None:
                setattr(connection, _SPAN_ATTR, (transaction, span))
        except Exception:  # noqa: BLE001 - recording must never break the request
            pass

    def _end(self, connection: Any) -> None:
        recorded = connection.__dict__.pop(_SPAN_ATTR, None)
        if recorded is not None:
            transaction, span = recorded
            transaction.span_end(span)


class Requests(Instrumentation):
    name = "requests"
    instrument_list = (("requests.sessions", "Session.send"),)

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        if inside("ext.http"):
            return wrapped(*args, **kwargs)
        request = first_arg(args, kwargs, "request")
        url = str(getattr(request, "url", "") or "")
        method = str(getattr(request, "method", "") or "GET")
        host = urlsplit(url).hostname or ""
        with trace(f"{method} {host}", "ext.http.requests", {"url": url_without_query(url)}):
            return wrapped(*args, **kwargs)
