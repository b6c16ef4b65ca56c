"""Redis commands and template rendering (Django templates, Jinja2)."""

from __future__ import annotations

from typing import Any, Callable

from ..tracing import trace
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
        with trace(getattr(instance, "name", None) or "<template>", "template.django"):
            return wrapped(*args, **kwargs)


class Jinja2(Instrumentation):
    name = "jinja2"
    instrument_list = (("jinja2.environment", "Template.render"),)

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        with trace(getattr(instance, "name", None) or "<template>", "template.jinja2"):
            return wrapped(*args, **kwargs)
