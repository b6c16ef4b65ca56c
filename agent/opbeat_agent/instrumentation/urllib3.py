"""urllib3: a span per ``HTTPConnectionPool.urlopen`` (``PoolManager.request``, ``urllib3.request``
and ``HTTPSConnectionPool`` all end there), kind ``ext.http.urllib3``, signature ``METHOD host``,
the URL without its query string in ``extra.url``.

Called through ``requests``, the call is already ``requests``' span and is not recorded again;
urllib3's own retries (``urlopen`` calling itself) stay inside the first span, and the
``http.client`` calls underneath are not recorded twice.
"""

from __future__ import annotations

from typing import Any, Callable

from ..tracing import trace
from .base import Instrumentation, first_arg, inside
from .http import url_without_query


class Urllib3(Instrumentation):
    name = "urllib3"
    instrument_list = (("urllib3.connectionpool", "HTTPConnectionPool.urlopen"),)

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        if inside("ext.http"):
            return wrapped(*args, **kwargs)
        method = str(first_arg(args, kwargs, "method") or "GET")
        target = str(args[1] if len(args) > 1 else kwargs.get("url", "/"))
        host = str(getattr(instance, "host", "") or "")
        if "://" in target:  # through a proxy, or an absolute URL
            url = target
        else:
            scheme = getattr(instance, "scheme", "http") or "http"
            port = getattr(instance, "port", None)
            netloc = f"{host}:{port}" if port else host
            url = f"{scheme}://{netloc}{target}"
        with trace(f"{method} {host}", "ext.http.urllib3", {"url": url_without_query(url)}):
            return wrapped(*args, **kwargs)
