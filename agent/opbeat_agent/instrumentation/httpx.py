"""httpx, sync and async: a span per ``Client.send``/``AsyncClient.send`` (what ``get``,
``post``, ``request`` and ``stream`` all go through), kind ``ext.http.httpx``, signature
``METHOD host``, the URL without its query string in ``extra.url``. Redirects that httpx follows
inside one ``send`` are one span. httpx does not use ``http.client``, so nothing below records
the call again.
"""

from __future__ import annotations

from typing import Any, Callable

from ..tracing import trace
from .base import Instrumentation, first_arg, inside
from .http import url_without_query


def _span_args(args: tuple, kwargs: dict) -> tuple:
    request = first_arg(args, kwargs, "request")
    url = getattr(request, "url", None)
    method = str(getattr(request, "method", "") or "GET")
    host = str(getattr(url, "host", "") or "")
    return f"{method} {host}", "ext.http.httpx", {"url": url_without_query(str(url or ""))}


class HTTPX(Instrumentation):
    name = "httpx"
    instrument_list = (("httpx", "Client.send"), ("httpx", "AsyncClient.send"))

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        if path.startswith("Async"):
            return self._call_async(wrapped, args, kwargs)
        if inside("ext.http"):
            return wrapped(*args, **kwargs)
        with trace(*_span_args(args, kwargs)):
            return wrapped(*args, **kwargs)

    async def _call_async(self, wrapped: Callable, args: tuple, kwargs: dict) -> Any:
        # The span times the awaited request, not the creation of the coroutine.
        if inside("ext.http"):
            return await wrapped(*args, **kwargs)
        with trace(*_span_args(args, kwargs)):
            return await wrapped(*args, **kwargs)
