"""The Django app: builds the client from settings and wires the signal when Django starts."""

from __future__ import annotations

from django.apps import AppConfig


class OpbeatAgentConfig(AppConfig):
    name = "opbeat_agent.integrations.django"
    label = "opbeat_agent"
    verbose_name = "Opbeat agent"

    def ready(self) -> None:
        from .setup import django_setup

        django_setup()
