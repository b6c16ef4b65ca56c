"""The agent's configuration: one typed table of options, read from keyword arguments, a framework's
settings mapping (Django's ``OPBEAT = {...}``, Flask's ``app.config["OPBEAT"]``) and ``OPBEAT_*``
environment variables, in that order of precedence.

Names are the original ``opbeat`` module's (``ORGANIZATION_ID``, ``APP_ID``, ``SECRET_TOKEN``,
``SERVERS``), so its settings work here unchanged; mappings accept them upper- or lower-case.

This module never raises at the host app for a bad value: ``config_build`` collects one readable
line per problem in ``Config.errors`` and the client stays disabled until they are fixed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Mapping, Optional

from .scrub import DEFAULT_KEYS

DEFAULT_SERVER = "http://127.0.0.1:8000"

# Keys whose values default scrubbing masks wherever they appear; the rules that match them (case
# and separators ignored, short names as whole words) are in opbeat_agent.scrub.
DEFAULT_SCRUB_KEYS = DEFAULT_KEYS


@dataclass
class Config:
    organization_id: str = ""
    app_id: str = ""
    secret_token: str = ""
    servers: list = field(default_factory=lambda: [DEFAULT_SERVER])
    release: str = ""
    environment: str = ""
    hostname: str = field(default_factory=socket.gethostname)
    # False turns every capture into a no-op (tests, local development).
    enabled: bool = True

    # Stack traces.
    # Module prefixes that are the app's own code (in_app), and prefixes that never are. Without
    # them, a frame is in-app unless it comes from site-packages, dist-packages or the stdlib.
    include_paths: list = field(default_factory=list)
    exclude_paths: list = field(default_factory=list)
    context_lines: int = 3
    collect_local_variables: bool = True
    # The original agent's caps: a local's repr is cut at 200 characters, containers at 50 items.
    local_var_max_length: int = 200
    local_var_max_items: int = 50
    max_frames: int = 250
    max_chained_exceptions: int = 5
    ignore_exceptions: list = field(default_factory=list)

    # Scrubbing.
    scrub_data: bool = True
    scrub_keys: list = field(default_factory=lambda: list(DEFAULT_SCRUB_KEYS))
    scrub_card_numbers: bool = True

    # Requests.
    capture_body: bool = True
    max_body_bytes: int = 10 * 1024

    # Transport.
    # An instance, a class or a dotted path of a Transport; empty means the HTTP transport.
    transport: Any = ""
    timeout: float = 10.0
    max_queue_size: int = 1000
    max_batch: int = 100
    retry_backoff_base: float = 1.0
    retry_backoff_max: float = 60.0
    shutdown_timeout: float = 3.0
    # A 5xx other than 503 for the same event this many times means the event itself is the
    # problem: it is dropped rather than blocking everything behind it.
    max_attempts_on_server_error: int = 5

    # Transactions (performance).
    transactions_enabled: bool = True
    # How often the reporter sends what it aggregated; histograms are per minute and mergeable,
    # so a minute sent in several bodies adds up on the server.
    transactions_interval: float = 10.0
    transaction_queue_size: int = 10000
    transaction_max_spans: int = 500
    transaction_max_groups: int = 1000
    traces_per_group: int = 1
    sketch_relative_accuracy: float = 0.01
    # Spans slower than this (ms) carry a short stack of where they were started.
    span_stack_min_duration: float = 5.0
    span_stack_max_frames: int = 15
    # Auto-instrumentation of the libraries in opbeat_agent.instrumentation; names to leave alone.
    instrument: bool = True
    disabled_instrumentations: list = field(default_factory=list)

    # Django: insert OpbeatMiddleware at the top of MIDDLEWARE when the settings do not list it.
    django_auto_insert_middleware: bool = True

    errors: list = field(default_factory=list)

    @property
    def sendable(self) -> bool:
        """True when the client should build and send events."""
        return self.enabled and not self.errors

    def endpoint_url(self, server: str, endpoint: str = "errors") -> str:
        """``endpoint`` is "errors" or "transactions"."""
        return f"{server.rstrip('/')}/api/v1/organizations/{self.organization_id}/apps/{self.app_id}/{endpoint}/"


_OPTION_TYPES = {f.name: f for f in fields(Config) if f.name != "errors"}
_REQUIRED = ("organization_id", "app_id", "secret_token")


def _coerce(name: str, value: Any) -> Any:
    """Turn a setting's value (possibly a string from the environment) into the option's type."""
    option = _OPTION_TYPES[name]
    default = option.default_factory() if option.default is MISSING else option.default
    if name == "transport":
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, list):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ValueError(f"expected a list, got {value!r}")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _normalise_keys(mapping: Mapping[str, Any], source: str, errors: list) -> dict:
    out = {}
    for key, value in mapping.items():
        name = str(key).lower()
        if name not in _OPTION_TYPES:
            errors.append(f"{source}: unknown option {key!r}")
            continue
        out[name] = value
    return out


def _env_options(environ: Mapping[str, str]) -> dict:
    out = {}
    for name in _OPTION_TYPES:
        value = environ.get(f"OPBEAT_{name.upper()}")
        if value is not None:
            out[name] = value
    return out


def config_build(
    *,
    kwargs: Optional[Mapping[str, Any]] = None,
    settings: Optional[Mapping[str, Any]] = None,
    settings_name: str = "settings",
    environ: Optional[Mapping[str, str]] = None,
) -> Config:
    """Merge keyword arguments over a framework's settings mapping over ``OPBEAT_*`` variables.

    ``settings_name`` names the mapping in error lines (``OPBEAT setting``, ``app.config["OPBEAT"]``).
    """
    errors: list = []
    merged = _env_options(os.environ if environ is None else environ)
    merged.update(_normalise_keys(settings or {}, settings_name, errors))
    merged.update(_normalise_keys(kwargs or {}, "keyword argument", errors))
    values = {}
    for name, raw in merged.items():
        try:
            values[name] = _coerce(name, raw)
        except (TypeError, ValueError) as exc:
            errors.append(f"{name}: {exc}")
    config = Config(**values)
    for name in _REQUIRED:
        if not getattr(config, name):
            errors.append(f"{name} is not set (OPBEAT_{name.upper()} or {name.upper()} in the settings)")
    if not config.servers:
        errors.append("servers is empty")
    for server in config.servers:
        if not str(server).startswith(("http://", "https://")):
            errors.append(f"servers: {server!r} is not an http:// or https:// URL")
    for name in ("timeout", "shutdown_timeout", "retry_backoff_base", "retry_backoff_max", "transactions_interval"):
        if getattr(config, name) < 0:
            errors.append(f"{name} must not be negative")
    for name in ("max_queue_size", "max_batch", "local_var_max_length", "local_var_max_items", "max_frames",
                 "transaction_queue_size", "transaction_max_spans", "transaction_max_groups"):
        if getattr(config, name) < 1:
            errors.append(f"{name} must be at least 1")
    if not 0 < config.sketch_relative_accuracy < 1:
        errors.append("sketch_relative_accuracy must be between 0 and 1")
    if not config.release:
        # Running from a git checkout: its head commit names the release, as `opbeat-agent
        # release` posts it by default, so errors and transactions find their release's commits.
        from .gitinfo import git_head

        config.release = git_head()
    config.errors = errors
    return config
