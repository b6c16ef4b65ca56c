"""Redis commands and template rendering (Django templates, Jinja2)."""

from __future__ import annotations

from typing import Any, Callable

from ..tracing import span_call, trace
from .base import Instrumentation, first_arg


class Redis(Instrumentation):
    name = "redis"
    instrument_list = (("redis.client", "Redis.execute_command"), ("redis.client", "Pipeline.execute"))

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        if path.startswith("Pipeline"):
            signature = "PIPELINE"
        else:
            command = first_arg(args, kwargs, "command")
            # The command only: keys and values may be personal data.
            signature = (command.decode("ascii", "replace") if isinstance(command, bytes) else str(command)).upper()
        with trace(signature, "db.redis"):
            return wrapped(*args, **kwargs)


class DjangoTemplates(Instrumentation):
    name = "django.template"
    instrument_list = (("django.template.base", "Template.render"),)

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        return span_call(getattr(instance, "name", None) or "<template>", "template.django", wrapped, *args, **kwargs)


class Jinja2(Instrumentation):
    name = "jinja2"
    instrument_list = (("jinja2.environment", "Template.render"),)

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        return span_call(getattr(instance, "name", None) or "<template>", "template.jinja2", wrapped, *args, **kwargs)


_CACHE_METHODS = (
    "get", "set", "add", "delete", "get_many", "set_many", "delete_many", "has_key", "incr", "decr",
    "touch", "get_or_set", "clear",
)  # fmt: skip


def _cache_proxy_class() -> type:
    import wrapt

    def traced(method: str) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            bound = getattr(self.__wrapped__, method)
            from ..tracing import transaction_current

            if transaction_current() is None:
                return bound(*args, **kwargs)
            # The operation and the cache's alias only: keys may hold personal data.
            with trace(f"{method} {self._self_alias}", self._self_kind):
                return bound(*args, **kwargs)

        call.__name__ = method
        return call

    def init(self: Any, wrapped: Any, alias: str) -> None:
        wrapt.ObjectProxy.__init__(self, wrapped)
        self._self_alias = alias
        backend = type(wrapped).__module__.rsplit(".", 1)[-1]  # locmem, redis, filebased, memcached, db
        self._self_kind = f"cache.{backend}"

    namespace = {method: traced(method) for method in _CACHE_METHODS}
    namespace["__init__"] = init
    return type("CacheProxy", (wrapt.ObjectProxy,), namespace)


class DjangoCache(Instrumentation):
    """Django's cache: each backend a ``caches[alias]`` hands out is wrapped in a proxy whose
    operations are spans (kind ``cache.<backend>``, signature ``get default``)."""

    name = "django.cache"
    instrument_list = (("django.core.cache", "CacheHandler.create_connection"),)

    def __init__(self) -> None:
        super().__init__()
        self._proxy_class: Any = None

    def _wrapper(self, module: str, path: str) -> Callable:
        # Always proxy: backends are created once per thread and serve later requests.
        def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
            backend = wrapped(*args, **kwargs)
            if self._proxy_class is None:
                self._proxy_class = _cache_proxy_class()
            alias = first_arg(args, kwargs, "alias") or "default"
            return self._proxy_class(backend, str(alias))

        return wrapper
