"""Any WSGI app (Pyramid, Bottle, Falcon, a hand-written one): ``OpbeatMiddleware(app, client=client)``
times every request as a transaction (ended when the server closes the response) and captures
what the app raises, while it is called and while its response is iterated, with the
request described from the WSGI environ; the exception is then re-raised unchanged, so the server
answers as it would have without us.

Also the environ helpers the other integrations share. This module imports no framework.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from ..context import scope_pop, scope_push

# Enough of the environ to tell which server and client were involved; the rest (wsgi.*, os
# environment variables some servers copy in) is noise at best and secrets at worst.
_ENV_KEYS = ("REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT")


def _wsgi_str(value: str) -> str:
    # PEP 3333: environ strings are bytes decoded as latin-1; paths are usually UTF-8 underneath.
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except (UnicodeEncodeError, AttributeError):
        return value


def url_from_environ(environ: dict) -> str:
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "")
        port = str(environ.get("SERVER_PORT", ""))
        if port and (scheme, port) not in (("http", "80"), ("https", "443")):
            host = f"{host}:{port}"
    path = _wsgi_str(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    query = environ.get("QUERY_STRING", "")
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def headers_from_environ(environ: dict) -> dict:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        if value in (None, "") and not key.startswith("HTTP_"):
            continue
        headers[name.replace("_", "-").title()] = _wsgi_str(str(value))
    return headers


def cookies_parse(header: str) -> dict:
    """``a=1; b=2`` as a dict. Deliberately lenient: http.cookies.SimpleCookie drops every cookie
    after the first one it cannot parse, and browsers send such cookies."""
    cookies = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            cookies[name] = value
    return cookies


def env_from_environ(environ: dict) -> dict:
    return {key: str(environ[key]) for key in _ENV_KEYS if key in environ}


def http_from_environ(environ: dict) -> dict:
    """The ``http`` section of an errors body from a WSGI environ (without the body, which the
    app has consumed by the time it fails)."""
    return {
        "method": environ.get("REQUEST_METHOD", ""),
        "url": url_from_environ(environ),
        "query_string": _wsgi_str(environ.get("QUERY_STRING", "")),
        "headers": headers_from_environ(environ),
        "cookies": cookies_parse(environ.get("HTTP_COOKIE", "")),
        "env": env_from_environ(environ),
    }


class _ResponseIterable:
    """Wraps the app's response so a failure while it streams is captured too, and the request's
    scope lasts until the server has closed it."""

    def __init__(self, iterable: Iterable, middleware: "OpbeatMiddleware", token: Any, state: dict) -> None:
        self._iterable = iterable
        self._middleware = middleware
        self._token = token
        self._state = state

    def __iter__(self):
        try:
            yield from self._iterable
        except Exception:
            self._state["failed"] = True
            self._middleware._capture()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self._state["failed"] = True
                    self._middleware._capture()
                    raise
        finally:
            self._middleware._end(self._state)
            scope_pop(self._token)


class OpbeatMiddleware:
    """``application = OpbeatMiddleware(application, client=client)``; without ``client`` it uses
    the global one (``opbeat_agent.init``)."""

    def __init__(self, application: Callable, client: Optional[Any] = None) -> None:
        self.application = application
        self.client = client

    def _client(self) -> Optional[Any]:
        if self.client is not None:
            return self.client
        from .. import get_client

        return get_client()

    def _capture(self) -> None:
        client = self._client()
        if client is not None:
            client.capture_exception()

    def _end(self, state: dict) -> None:
        client = self._client()
        if client is None or not state.get("began"):
            return
        status = 500 if state.get("failed") else state.get("status", 500)
        client.end_transaction(self.transaction_name(state["environ"]), status)

    def transaction_name(self, environ: dict) -> Optional[str]:
        """None keeps a name the app set with ``opbeat_agent.transaction_name_set``; without one
        the transaction is ``METHOD <wsgi>``: a WSGI app has no routes we could name it by, and a
        raw path would make one group per URL. Subclass to name by your framework's route."""
        from ..tracing import transaction_current

        transaction = transaction_current()
        if transaction is not None and transaction.name:
            return None
        return f"{environ.get('REQUEST_METHOD', '')} <wsgi>"

    def __call__(self, environ: dict, start_response: Callable) -> Iterable:
        token = scope_push(http=lambda: http_from_environ(environ))
        client = self._client()
        state: dict = {"environ": environ}
        state["began"] = client is not None and client.begin_transaction("request") is not None

        def recording_start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            try:
                state["status"] = int(status.split(" ", 1)[0])
            except (ValueError, AttributeError):
                pass
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            iterable = self.application(environ, recording_start_response)
        except Exception:
            state["failed"] = True
            self._capture()
            self._end(state)
            scope_pop(token)
            raise
        return _ResponseIterable(iterable, self, token, state)
