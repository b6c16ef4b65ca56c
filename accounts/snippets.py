"""Copy-paste set-up for an app: the original ``opbeat`` module and our ``opbeat_agent``.

Plain text built from the app's ids and ``settings.BASE_URL``; templates escape it when they show
it. The original module's snippets must stay exactly what opbeat 3.x accepts (its Flask extension
takes no ``servers`` argument, so ``SERVERS`` goes in ``app.config["OPBEAT"]``); this module must
never suggest a setting that module would reject.

The secret token is filled in only on the page that shows it once (right after the app is
created or its token rotated); every other time the snippets carry ``SECRET_TOKEN_PLACEHOLDER``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings

from .models import App

SECRET_TOKEN_PLACEHOLDER = "<secret token>"


@dataclass(frozen=True)
class Snippet:
    agent: str  # "opbeat" (the original module) or "opbeat_agent" (ours)
    framework: str  # "Django", "Flask", "WSGI"
    install: str
    code: str

    @property
    def slug(self) -> str:
        return f"{self.agent}-{self.framework.lower()}"


def _q(value: str) -> str:
    # A Python string literal: json.dumps quotes and escapes the same way for these ASCII values.
    return json.dumps(value)


def _settings_dict(app: App, secret_token: str, servers: str, indent: str = "    ") -> str:
    return (
        "{\n"
        f'{indent}"ORGANIZATION_ID": {_q(app.organization.public_id)},\n'
        f'{indent}"APP_ID": {_q(app.public_id)},\n'
        f'{indent}"SECRET_TOKEN": {_q(secret_token)},\n'
        f'{indent}"SERVERS": [{_q(servers)}],\n'
        "}"
    )


def _kwargs(app: App, secret_token: str, servers: str, with_servers: bool = True) -> str:
    lines = [
        f"    organization_id={_q(app.organization.public_id)},",
        f"    app_id={_q(app.public_id)},",
        f"    secret_token={_q(secret_token)},",
    ]
    if with_servers:
        lines.append(f"    servers=[{_q(servers)}],")
    return "\n".join(lines)


def app_setup_snippets(*, app: App, secret_token: str | None = None) -> list[Snippet]:
    """The snippets for ``app``; ``secret_token`` is the clear token when the page may show it."""
    servers = settings.BASE_URL
    secret_token = secret_token or SECRET_TOKEN_PLACEHOLDER
    opbeat_dict = _settings_dict(app, secret_token, servers)
    return [
        Snippet(
            agent="opbeat",
            framework="Django",
            install="pip install opbeat",
            code=(
                "# settings.py\n"
                'INSTALLED_APPS += ["opbeat.contrib.django"]\n'
                f"OPBEAT = {opbeat_dict}\n"
                "# First in the list, so it times the whole request:\n"
                'MIDDLEWARE = ["opbeat.contrib.django.middleware.OpbeatAPMMiddleware"] + MIDDLEWARE\n'
            ),
        ),
        Snippet(
            agent="opbeat",
            framework="Flask",
            install="pip install opbeat blinker",
            code=(
                "from opbeat.contrib.flask import Opbeat\n\n"
                f'app.config["OPBEAT"] = {opbeat_dict}\n'
                "opbeat = Opbeat(app)\n"
            ),
        ),
        Snippet(
            agent="opbeat",
            framework="WSGI",
            install="pip install opbeat",
            code=(
                "from opbeat import Client\n"
                "from opbeat.middleware import Opbeat\n\n"
                "client = Client(\n"
                f"{_kwargs(app, secret_token, servers)}\n"
                ")\n"
                "application = Opbeat(application, client)\n"
            ),
        ),
        Snippet(
            agent="opbeat_agent",
            framework="Django",
            install="pip install opbeat-agent",
            code=(
                "# settings.py\n"
                'INSTALLED_APPS += ["opbeat_agent.integrations.django"]\n'
                f"OPBEAT = {opbeat_dict}\n"
                'MIDDLEWARE = ["opbeat_agent.integrations.django.OpbeatMiddleware"] + MIDDLEWARE\n'
            ),
        ),
        Snippet(
            agent="opbeat_agent",
            framework="Flask",
            install="pip install opbeat-agent[flask]",
            code=(
                "from opbeat_agent.integrations.flask import Opbeat\n\n"
                "opbeat = Opbeat(\n"
                "    app,\n"
                f"{_kwargs(app, secret_token, servers)}\n"
                ")\n"
            ),
        ),
        Snippet(
            agent="opbeat_agent",
            framework="WSGI",
            install="pip install opbeat-agent",
            code=(
                "from opbeat_agent import Client\n"
                "from opbeat_agent.integrations.wsgi import OpbeatMiddleware\n\n"
                "client = Client(\n"
                f"{_kwargs(app, secret_token, servers)}\n"
                ")\n"
                "application = OpbeatMiddleware(application, client=client)\n"
            ),
        ),
    ]

