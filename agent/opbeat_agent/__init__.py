"""opbeat_agent: errors and performance from Django, Flask or any WSGI app to an
Opbeat Intake API v1 server.

    import opbeat_agent
    opbeat_agent.init(organization_id="...", app_id="...", secret_token="...", servers=["https://..."])
    opbeat_agent.capture_message("Payment %s failed", ("p-1",))

Importing this package never imports a web framework: integrations live in
``opbeat_agent.integrations.<framework>`` and are imported only by the apps that use them.
"""

from __future__ import annotations

from typing import Any, Optional

from .client import Client, client_from_settings
from .config import Config, config_build
from .context import extra_set, tag_set
from .handlers import OpbeatHandler
from .tracing import trace, transaction_name_set
from .integrations import DidNotEnable
from .transport import HTTPTransport, MemoryTransport, Transport
from .version import __version__

__all__ = [
    "Client",
    "Config",
    "DidNotEnable",
    "HTTPTransport",
    "MemoryTransport",
    "OpbeatHandler",
    "Transport",
    "__version__",
    "begin_transaction",
    "capture_exception",
    "capture_message",
    "client_from_settings",
    "config_build",
    "end_transaction",
    "extra_set",
    "flush",
    "get_client",
    "init",
    "set_client",
    "tag_set",
    "trace",
    "transaction_name_set",
]

_client: Optional[Client] = None


def init(**options: Any) -> Client:
    """Build a client from ``options`` and the ``OPBEAT_*`` environment, and make it the global one."""
    client = Client(**options)
    set_client(client)
    return client


def set_client(client: Optional[Client]) -> None:
    global _client
    _client = client


def get_client() -> Optional[Client]:
    return _client


def capture_exception(exc_info: Any = None, **kwargs: Any) -> Optional[str]:
    """``Client.capture_exception`` on the global client; None when there is none."""
    client = _client
    return client.capture_exception(exc_info, **kwargs) if client is not None else None


def capture_message(message: str, params: Any = (), **kwargs: Any) -> Optional[str]:
    client = _client
    return client.capture_message(message, params, **kwargs) if client is not None else None


def begin_transaction(kind: str = "request") -> Any:
    """``Client.begin_transaction`` on the global client; None when there is none."""
    client = _client
    return client.begin_transaction(kind) if client is not None else None


def end_transaction(name: Optional[str] = None, result: Any = None) -> Any:
    client = _client
    return client.end_transaction(name, result) if client is not None else None


def flush(timeout: Optional[float] = None) -> bool:
    client = _client
    return client.flush(timeout) if client is not None else True
