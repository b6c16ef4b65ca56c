"""Describing a Django request for an errors body. Every reader here may fail on a broken request
(a disallowed Host, a body already streamed, a database that is down when ``request.user`` is
loaded): callers catch, and an error is sent without that part rather than not at all."""

from __future__ import annotations

import html
from typing import Any, Optional

from ..wsgi import env_from_environ

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# A body bigger than this is not read just to describe an error (see the Flask integration).
_MAX_BODY_READ = 1024 * 1024


def _url(request: Any) -> str:
    try:
        return request.build_absolute_uri()
    except Exception:  # noqa: BLE001 - DisallowedHost: the Host header is the bad part, describe without it
        meta = request.META
        scheme = "https" if request.is_secure() else "http"
        return f"{scheme}://{meta.get('SERVER_NAME', '')}:{meta.get('SERVER_PORT', '')}{request.get_full_path()}"


def _body(request: Any, max_bytes: int) -> Any:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    content_type = (request.META.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > _MAX_BODY_READ:
        return f"<body of {length} bytes not captured>"
    if content_type in _FORM_TYPES:
        data: dict = {k: v[0] if len(v) == 1 else v for k, v in request.POST.lists()}
        for name, upload in request.FILES.items():
            data[name] = f"<file {upload.name!r}>"
        return data
    raw = request.body
    if not raw:
        return None
    # Returned as text: the scrubber parses JSON bodies itself, so secrets inside are masked.
    return raw[:max_bytes].decode("utf-8", "replace")


def http_from_django(request: Any, config: Any) -> dict:
    meta = request.META
    http = {
        "method": request.method,
        "url": _url(request),
        "query_string": meta.get("QUERY_STRING", ""),
        "headers": dict(request.headers.items()),
        "cookies": dict(request.COOKIES),
        "env": env_from_environ(meta),
    }
    if config.capture_body:
        try:
            http["data"] = _body(request, config.max_body_bytes)
        except Exception:  # noqa: BLE001 - RawPostDataException, RequestDataTooBig, a malformed multipart body
            http["data"] = None
    return http


def user_from_django(request: Any) -> dict:
    user = getattr(request, "user", None)
    if user is None:
        return {}
    if not user.is_authenticated:
        return {"is_authenticated": False}
    pk = user.pk
    return {
        "id": pk if isinstance(pk, int) else str(pk),
        "username": user.get_username(),
        "email": getattr(user, "email", "") or "",
        "is_authenticated": True,
    }


def template_from_exception(exc: Optional[BaseException]) -> Optional[dict]:
    """Where a template failed, when Django's template debug info is on (``DEBUG`` templates):
    the original module's ``template`` field, shaped like a frame."""
    debug = getattr(exc, "template_debug", None)
    if not isinstance(debug, dict):
        return None
    lineno = debug.get("line")
    # Django keeps the lines HTML-escaped (for its debug page) and with their newlines.
    lines = {n: html.unescape(str(text)).rstrip("\r\n") for n, text in debug.get("source_lines") or ()}
    if not isinstance(lineno, int):
        return None
    return {
        "filename": str(debug.get("name", "")),
        "lineno": lineno,
        "pre_context": [lines[n] for n in range(max(1, lineno - 3), lineno) if n in lines],
        "context_line": lines.get(lineno, ""),
        "post_context": [lines[n] for n in range(lineno + 1, lineno + 3) if n in lines],
    }
