"""Scrubbing: mask secrets in an event before it leaves the process.

Keys are matched case-insensitively as substrings against ``Config.scrub_keys`` (so ``csrftoken``,
``X-Api-Key`` and ``user_password2`` are caught); their values become ``********``, the original
agent's mask, wherever they sit: frame locals, headers, cookies, query strings, form and JSON
bodies, ``extra``, and ``key=value`` pairs inside any string we send (a URL in a library frame's
``repr`` of the request, the WSGI environ's ``QUERY_STRING``). Independently of keys, digit runs that pass the Luhn check like a payment card
number (13 to 19 digits, spaces or dashes allowed) are masked inside any string we send.

This module never raises on odd input (non-string keys, bytes, cycles): it masks what it
understands and passes the rest through.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable
from urllib.parse import quote_plus, unquote_plus, urlsplit, urlunsplit

MASK = "********"

_CARD_RE = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
# ``key=value`` at the start of a string or after ? & ; or a space: query strings, URLs inside a
# repr ("<Request 'http://h/p?password=pw' [GET]>"), "token=abc" in a log line.
_PAIR_RE = re.compile(r"(?:^|(?<=[?&;\s]))([\w.\-\[\]%]+)=([^&#;\s'\"<>]*)")
_MAX_DEPTH = 20


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        n = ord(char) - 48
        if index % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


class Scrubber:
    def __init__(self, *, keys: Iterable[str], card_numbers: bool = True, enabled: bool = True) -> None:
        self.enabled = enabled
        self.card_numbers = card_numbers
        words = [re.escape(k.lower()) for k in keys if k]
        self._key_re = re.compile("|".join(words)) if words else None

    def key_is_sensitive(self, key: Any) -> bool:
        if not self.enabled or self._key_re is None:
            return False
        return bool(self._key_re.search(str(key).lower()))

    def text(self, value: str) -> str:
        """``value`` with the values of sensitive ``key=value`` pairs masked (a URL or a query
        string inside a repr, an environ's ``QUERY_STRING``, a log line) and anything that looks
        like a payment card number masked."""
        if not self.enabled or not isinstance(value, str):
            return value
        if "=" in value and self._key_re is not None:
            value = _PAIR_RE.sub(self._pair_mask, value)
        if not self.card_numbers or sum(c.isdigit() for c in value[:4096]) < 13:
            return value  # cheap exit for the common case: too few digits to hold a card number

        def replace(match: re.Match) -> str:
            digits = re.sub(r"\D", "", match.group(0))
            return MASK if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)

        return _CARD_RE.sub(replace, value)

    def _pair_mask(self, match: re.Match) -> str:
        key, raw = match.group(1), match.group(2)
        if not raw or raw == MASK:
            return match.group(0)
        try:
            sensitive = self.key_is_sensitive(unquote_plus(key))
        except Exception:  # noqa: BLE001 - an undecodable key is not one of ours
            sensitive = False
        return f"{key}={MASK}" if sensitive else match.group(0)

    def value(self, value: Any, _depth: int = 0) -> Any:
        """Scrub a JSON-like structure: sensitive keys masked at any depth, card numbers in strings."""
        if not self.enabled:
            return value
        if isinstance(value, str):
            return self.text(value)
        if _depth > _MAX_DEPTH:
            return value
        if isinstance(value, dict):
            return {
                k: (MASK if self.key_is_sensitive(k) and v not in (None, "") else self.value(v, _depth + 1))
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.value(item, _depth + 1) for item in value]
        return value

    def query_string(self, query: str) -> str:
        """Mask the values of sensitive keys in ``a=1&password=x`` and keep the rest as sent."""
        if not self.enabled or not query or not isinstance(query, str):
            return query
        parts = []
        for part in query.split("&"):
            key, sep, raw = part.partition("=")
            if sep and self.key_is_sensitive(unquote_plus(key)):
                parts.append(f"{key}={MASK}")
                continue
            if sep and self.card_numbers:
                decoded = unquote_plus(raw)
                masked = self.text(decoded)
                if masked != decoded:
                    raw = quote_plus(masked, safe="*")
            parts.append(f"{key}{sep}{raw}")
        return "&".join(parts)

    def url(self, url: str) -> str:
        if not self.enabled or not isinstance(url, str) or "?" not in url:
            return url
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.text(url)
        return urlunsplit(parts._replace(query=self.query_string(parts.query)))

    def body(self, data: Any) -> Any:
        """A request body: a form or JSON structure is scrubbed by key; a JSON string is parsed
        first, so a secret inside a raw JSON body is still caught."""
        if not self.enabled:
            return data
        if isinstance(data, str):
            stripped = data.lstrip()
            if stripped[:1] in ("{", "["):
                try:
                    return self.value(json.loads(data))
                except ValueError:
                    pass  # a truncated or non-JSON body is sent as text, card numbers masked
            elif "=" in data and "&" in data and " " not in data.strip():
                return self.query_string(data)
            return self.text(data)
        return self.value(data)


def _frames_scrub(scrubber: Scrubber, stacktrace: Any) -> None:
    if not isinstance(stacktrace, dict):
        return
    for frame in stacktrace.get("frames") or ():
        if isinstance(frame, dict) and isinstance(frame.get("vars"), dict):
            frame["vars"] = scrubber.value(frame["vars"])


def event_scrub(*, event: dict, scrubber: Scrubber) -> dict:
    """Scrub an errors body in place (and return it)."""
    if not scrubber.enabled:
        return event
    _frames_scrub(scrubber, event.get("stacktrace"))
    exception = event.get("exception")
    if isinstance(exception, dict):
        exception["value"] = scrubber.text(exception.get("value"))
        for cause in exception.get("chain") or ():
            if isinstance(cause, dict):
                cause["value"] = scrubber.text(cause.get("value"))
                _frames_scrub(scrubber, cause.get("stacktrace"))
    if isinstance(event.get("message"), str):
        event["message"] = scrubber.text(event["message"])
    param_message = event.get("param_message")
    if isinstance(param_message, dict) and isinstance(param_message.get("params"), (list, tuple)):
        param_message["params"] = scrubber.value(list(param_message["params"]))
    http = event.get("http")
    if isinstance(http, dict):
        for name in ("headers", "cookies", "env"):
            if isinstance(http.get(name), dict):
                http[name] = scrubber.value(http[name])
        if "url" in http:
            http["url"] = scrubber.url(http["url"])
        if "query_string" in http:
            http["query_string"] = scrubber.query_string(http["query_string"])
        if http.get("data") is not None:
            http["data"] = scrubber.body(http["data"])
    if isinstance(event.get("extra"), dict):
        event["extra"] = scrubber.value(event["extra"])
    return event
