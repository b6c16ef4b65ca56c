"""Flask: ``Opbeat(app)`` or ``opbeat = Opbeat(); opbeat.init_app(app)``.

Every request is a transaction named by its URL rule (``GET /orders/<int:pk>``), with the
response's status as result.

Configured from keyword arguments, ``app.config["OPBEAT"]`` (the original module's dict) and
``OPBEAT_*`` variables. Unhandled errors arrive through Flask's ``got_request_exception`` signal,
which Flask sends only for errors that become a 500 (never for ``abort(404)``, never for errors an
``errorhandler`` dealt with), with the request: method, URL, scrubbed headers, cookies, query
string, capped body, and the user when Flask-Login is in use.
"""

from __future__ import annotations

import contextvars
import sys
from typing import Any, Optional

from . import DidNotEnable

try:
    import flask
    from flask import got_request_exception
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise DidNotEnable("Flask is not installed: pip install opbeat-agent[flask]") from exc

from .. import get_client, set_client
from ..client import Client, client_from_settings
from ..context import scope_pop, scope_push
from .wsgi import env_from_environ

_JSON_TYPES = ("application/json", "+json")
# A body bigger than this is not read just to describe an error: reading it could cost the app
# more than the error report is worth. Smaller ones are read (Flask caches them) and capped.
_MAX_BODY_READ = 1024 * 1024


def _body(request: Any, max_bytes: int) -> Any:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    length = request.content_length
    if length is not None and length > _MAX_BODY_READ:
        return f"<body of {length} bytes not captured>"
    mimetype = request.mimetype or ""
    if mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        data: dict = {k: v[0] if len(v) == 1 else v for k, v in request.form.lists()}
        for name, storage in request.files.items():
            data[name] = f"<file {storage.filename!r}>"
        return data
    raw = request.get_data(cache=True)
    if not raw:
        return None
    text = raw[:max_bytes].decode("utf-8", "replace")
    if mimetype.endswith(_JSON_TYPES) and len(raw) <= max_bytes:
        parsed = request.get_json(silent=True)
        if parsed is not None:
            return parsed
    return text


def http_from_flask(request: Any, config: Any) -> dict:
    http = {
        "method": request.method,
        "url": request.url,
        "query_string": request.query_string.decode("latin-1"),
        "headers": dict(request.headers.items()),
        "cookies": dict(request.cookies.items()),
        "env": env_from_environ(request.environ),
    }
    if config.capture_body:
        try:
            http["data"] = _body(request, config.max_body_bytes)
        except Exception:  # noqa: BLE001 - a malformed body must not lose the error it came with
            http["data"] = None
    return http


def user_from_flask() -> dict:
    # Flask-Login is the common way; only look when the app imported it, never import it ourselves.
    if "flask_login" not in sys.modules:
        return {}
    user = sys.modules["flask_login"].current_user
    if user is None or not getattr(user, "is_authenticated", False):
        return {"is_authenticated": False}
    out: dict = {"is_authenticated": True}
    try:
        out["id"] = user.get_id()
    except Exception:  # noqa: BLE001 - a user model without get_id()
        pass
    for name in ("username", "email"):
        value = getattr(user, name, None)
        if isinstance(value, str):
            out[name] = value
    return out


def transaction_name(request: Any) -> str:
    """``METHOD /orders/<int:pk>`` from the URL rule that matched, never the raw path."""
    rule = request.url_rule
    return f"{request.method} {rule.rule if rule is not None else '<unmatched>'}"


class Opbeat:
    """The Flask extension. ``client`` may be given; otherwise one is built from the options."""

    def __init__(self, app: Optional[flask.Flask] = None, client: Optional[Client] = None, **options: Any) -> None:
        self.client = client
        self.options = options
        self._state: contextvars.ContextVar = contextvars.ContextVar(f"opbeat_agent_flask_{id(self)}", default=None)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask, client: Optional[Client] = None) -> None:
        client = client or self.client
        if client is None:
            client = client_from_settings(
                settings=app.config.get("OPBEAT"), settings_name='app.config["OPBEAT"]', options=self.options
            )
        self.client = client
        if get_client() is None:
            set_client(client)
        app.extensions["opbeat_agent"] = self
        got_request_exception.connect(self._on_exception, sender=app, weak=False)
        # First in line, so the transaction times the app's other before_request functions too.
        app.before_request_funcs.setdefault(None, []).insert(0, self._before_request)
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)

    # Per-request state in a ContextVar of this extension, not in flask.g: each access to g goes
    # through werkzeug's LocalProxy, which cost more than the transaction itself.
    def _before_request(self) -> None:
        request = flask.request._get_current_object()
        config = self.client.config
        token = scope_push(http=lambda: http_from_flask(request, config), user=user_from_flask)
        began = self.client.begin_transaction("request") is not None
        # [scope token, transaction begun, request, response status]; set, never reset: the next
        # request in this context overwrites it, and teardown clears it.
        self._state.set([token, began, request, 500])

    def _after_request(self, response: Any) -> Any:
        state = self._state.get()
        if state is not None:
            state[3] = response.status_code
        return response

    def _teardown_request(self, exc: Optional[BaseException]) -> None:
        state = self._state.get()
        if state is None:
            return
        self._state.set(None)
        token, began, request, status = state
        if began:
            self.client.end_transaction(transaction_name(request), 500 if exc is not None else status)
        scope_pop(token)

    def _on_exception(self, sender: Any, exception: BaseException, **extra: Any) -> None:
        client = self.client
        if client is None or not client.active:
            return
        data = {}
        try:
            data["http"] = http_from_flask(flask.request, client.config)
            data["user"] = user_from_flask()
        except Exception:  # noqa: BLE001 - describing the request is best effort; the error is what matters
            pass
        data = {k: v for k, v in data.items() if v}
        client.capture_exception(
            (type(exception), exception, exception.__traceback__), data=data, extra={"app": repr(sender)}
        )
