"""``manage.py opbeat check`` and ``manage.py opbeat test``.

``check`` reads the settings the way the agent does and prints one line per problem (exit status
1 if any). ``test`` sends one test error synchronously, bypassing any configured test transport,
and prints the URL of its page from the intake's ``Location`` header.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from opbeat_agent.client import Client
from opbeat_agent.config import config_build
from opbeat_agent.transport import HTTPTransport
from opbeat_agent.integrations.django.setup import MIDDLEWARE_PATH, _MIDDLEWARE_PATHS


def settings_problems() -> list:
    config = config_build(settings=getattr(settings, "OPBEAT", None) or {}, settings_name="OPBEAT setting")
    problems = list(config.errors)
    if "opbeat_agent.integrations.django" not in settings.INSTALLED_APPS and not any(
        str(app).startswith("opbeat_agent.integrations.django.") for app in settings.INSTALLED_APPS
    ):
        problems.append('INSTALLED_APPS: add "opbeat_agent.integrations.django"')
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    listed = [i for i, path in enumerate(middleware) if path in _MIDDLEWARE_PATHS]
    if len(listed) > 1:
        problems.append(f"MIDDLEWARE: {MIDDLEWARE_PATH} is listed {len(listed)} times")
    elif listed and listed[0] != 0:
        problems.append(
            f"MIDDLEWARE: {MIDDLEWARE_PATH} is at position {listed[0] + 1}; put it first so it sees the whole request"
        )
    elif not listed and not config.django_auto_insert_middleware:
        problems.append(f"MIDDLEWARE: add {MIDDLEWARE_PATH} first (django_auto_insert_middleware is off)")
    return problems


class Command(BaseCommand):
    help = "Check the agent's settings (opbeat check) or send a test error (opbeat test)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["check", "test"])
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the intake (test)")

    def handle(self, *args, **options):
        if options["action"] == "check":
            problems = settings_problems()
            for line in problems:
                self.stdout.write(line)
            if problems:
                raise CommandError(f"{len(problems)} problem(s) in the agent's settings")
            self.stdout.write("opbeat_agent: settings OK")
            return
        self._send_test(options["timeout"])

    def _send_test(self, timeout: float) -> None:
        problems = [p for p in settings_problems() if not p.startswith(("INSTALLED_APPS", "MIDDLEWARE"))]
        if problems:
            raise CommandError("; ".join(problems))
        options = dict(getattr(settings, "OPBEAT", None) or {})
        options = {k: v for k, v in options.items() if k.lower() != "transport"}
        config = config_build(settings=options, settings_name="OPBEAT setting")
        config.transport = HTTPTransport
        config.max_attempts_on_server_error = 1
        client = Client(config=config)
        try:
            raise RuntimeError("This is a test error sent by manage.py opbeat test")
        except RuntimeError:
            client.capture_exception()
        delivered = client.flush(timeout)
        transport = client.transport
        client.close(timeout=0)
        if delivered and transport.last_location and transport.stats().get("sent"):
            self.stdout.write(f"Test error sent: {transport.last_location}")
            return
        status = transport.last_status
        reason = f"the intake answered {status}" if status else "the intake could not be reached"
        raise CommandError(f"Test error not delivered to {config.servers[0]}: {reason}")
