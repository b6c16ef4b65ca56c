"""``OpbeatMiddleware``: every request is a transaction named by its URL pattern
(``GET /orders/<int:pk>/``, never the raw path) with the response's status as result; and the
request's scope, so anything captured while Django handles it (``capture_message`` in a view, a
logged error) says which request it was. Reading the request happens only if something is
captured."""

from __future__ import annotations

from typing import Any, Callable

from ...context import scope_pop, scope_push
from .request import http_from_django, user_from_django
from .setup import django_client

UNMATCHED = "<unmatched>"


def transaction_name(request: Any) -> str:
    """``METHOD /route/`` from the URL pattern that matched; ``METHOD <unmatched>`` for a 404,
    because a raw path would make one group per URL ever requested."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match is not None else None
    if route is None:
        return f"{request.method} {UNMATCHED}"
    # re_path patterns give the regex: drop the anchors so "^orders/(?P<pk>\d+)/$" reads as a path.
    route = route.replace("^", "").replace("$", "").replace("\\Z", "")
    return f"{request.method} /{route}"


class OpbeatMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.client = django_client()

    def __call__(self, request: Any) -> Any:
        client = self.client
        config = client.config
        token = scope_push(http=lambda: http_from_django(request, config), user=lambda: user_from_django(request))
        client.begin_transaction("request")
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            try:
                name = transaction_name(request)
            except Exception:  # noqa: BLE001 - naming is best effort; the transaction still counts
                name = f"{getattr(request, 'method', '')} {UNMATCHED}"
            client.end_transaction(name, status)
            scope_pop(token)
