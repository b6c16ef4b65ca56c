"""Per-request state: what an event captured during a request should say about that request.

Kept in a ``contextvars.ContextVar``, not a thread-local, so threaded servers, asyncio and
greenlets each see their own request. Integrations push a scope when a request starts and pop it
when it ends; the request's data is read lazily (``http``/``user`` are callables), so a request
without an error costs one ContextVar set and reset, and nothing else.

This module never imports a framework.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable, Optional


class Scope:
    """``tags`` and ``extra`` stay None until something sets one: most requests never do, and
    this object is made for every request (a dataclass with two dict factories cost ~3x more)."""

    __slots__ = ("http", "user", "tags", "extra")

    def __init__(self, http: Optional[Callable[[], dict]] = None, user: Optional[Callable[[], dict]] = None) -> None:
        self.http = http
        self.user = user
        self.tags: Optional[dict] = None
        self.extra: Optional[dict] = None


_scope: contextvars.ContextVar[Optional[Scope]] = contextvars.ContextVar("opbeat_agent_scope", default=None)


def scope_push(
    *,
    http: Optional[Callable[[], dict]] = None,
    user: Optional[Callable[[], dict]] = None,
) -> contextvars.Token:
    """Start a request's scope; hand the token back to ``scope_pop`` when the request ends."""
    return _scope.set(Scope(http=http, user=user))


def scope_pop(token: contextvars.Token) -> None:
    try:
        _scope.reset(token)
    except ValueError:
        # The token came from another context (a response iterated in a different task than the
        # one that started it): leave that context's scope alone, clear ours.
        _scope.set(None)


def scope_current() -> Optional[Scope]:
    return _scope.get()


def tag_set(key: str, value: Any) -> None:
    """Tag the events captured during the current request (no-op outside one)."""
    scope = _scope.get()
    if scope is not None:
        if scope.tags is None:
            scope.tags = {}
        scope.tags[str(key)] = str(value)


def extra_set(key: str, value: Any) -> None:
    scope = _scope.get()
    if scope is not None:
        if scope.extra is None:
            scope.extra = {}
        scope.extra[str(key)] = value
