"""``OpbeatMiddleware``: every request is a transaction named by its URL pattern
(``GET /orders/<int:pk>/``, never the raw path) with the response's status as result; and the
request's scope, so anything captured while Django handles it (``capture_message`` in a view, a
logged error) says which request it was. Reading the request happens only if something is
captured."""

from __future__ import annotations

from typing import Any, Callable

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
except ImportError:  # asgiref < 3.6 (Django < 4.1): sync only, Django adapts around us
    from inspect import iscoroutinefunction

    def markcoroutinefunction(func: Any) -> Any:
        raise TypeError("async middleware needs asgiref >= 3.6")

from ...context import scope_pop, scope_push
from .request import http_from_django, user_from_django
from .setup import django_client, request_exception_capture

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
    # Both: under ASGI with async views Django calls us without a thread hop.
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.client = django_client()
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def _begin(self, request: Any) -> Any:
        config = self.client.config
        token = scope_push(http=lambda: http_from_django(request, config), user=lambda: user_from_django(request))
        self.client.begin_transaction("request")
        return token

    def _end(self, request: Any, status: int, token: Any) -> None:
        try:
            name = transaction_name(request)
        except Exception:  # noqa: BLE001 - naming is best effort; the transaction still counts
            name = f"{getattr(request, 'method', '')} {UNMATCHED}"
        self.client.end_transaction(name, status)
        scope_pop(token)

    def __call__(self, request: Any) -> Any:
        if self._is_async:
            return self.__acall__(request)
        token = self._begin(request)
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            self._end(request, status, token)

    async def __acall__(self, request: Any) -> Any:
        token = self._begin(request)
        status = 500
        try:
            response = await self.get_response(request)
            status = response.status_code
            return response
        finally:
            self._end(request, status, token)

    def process_exception(self, request: Any, exception: BaseException) -> None:
        # A view's exception, with the exception object in hand. Needed for async views: Django
        # sends got_request_exception from a worker thread where sys.exc_info() is empty. For sync
        # views the signal sees it too; the capture mark makes the second one a no-op.
        request_exception_capture(request, (type(exception), exception, exception.__traceback__))
        return None
