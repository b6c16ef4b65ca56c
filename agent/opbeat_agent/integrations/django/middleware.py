"""``OpbeatMiddleware``: opens the request's scope, so anything captured while Django handles it
(``capture_message`` in a view, a logged error) says which request it was. Reading the request
happens only if something is captured."""

from __future__ import annotations

from typing import Any, Callable

from ...context import scope_pop, scope_push
from .request import http_from_django, user_from_django
from .setup import django_client


class OpbeatMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.client = django_client()

    def __call__(self, request: Any) -> Any:
        config = self.client.config
        token = scope_push(http=lambda: http_from_django(request, config), user=lambda: user_from_django(request))
        try:
            return self.get_response(request)
        finally:
            scope_pop(token)
