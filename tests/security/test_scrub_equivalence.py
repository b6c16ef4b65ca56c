"""The scrubber gives the same output as the rules it was made faster from: a frozen copy of
``opbeat_agent.scrub`` as it stood before its per-event cost was cut (below, run as its own
module) is compared with the module in use, on the captured bodies and on random nested data
built from the shapes the rules look for (hypothesis). Outputs are compared by ``repr``, so key
order and container types must match too; both scrubbers keep their caches across examples, so
a cache answering wrongly shows up as a difference.

The worker's scrubber (``json_input=True``, decoded JSON changed in place) is compared with the
frozen copying scrubber, the agent's: decoded JSON must come out as the rules say whichever walk
reads it. (The frozen in-place walk kept a JSON document held in a string as it came, secrets
included; only the tests of structures seen before compare with it, below.)"""

from __future__ import annotations

import copy
import json
import sys
import types
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from opbeat_agent import scrub
from opbeat_agent.config import DEFAULT_SCRUB_KEYS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "opbeat"

# The scrubbing module as it was, verbatim but for its one relative import.
FROZEN_SOURCE = r'''"""Scrubbing: the one set of rules that masks secrets in an event, in the agent before an event
leaves the host app and in the server's worker before anything is stored (whatever client sent
it). Pure Python, standard library only: it runs inside users' apps and must never import a
framework.

What is masked (as ``********``, the original opbeat agent's mask, so events of both look alike):

- values under a sensitive key, at any depth: dict keys, ``(name, value)`` pairs in lists, and
  ``key=value``, ``key: value``, ``key='value'``, ``"key": "value"`` inside any string. Keys are
  compared case-insensitively with separators removed (``api_key``, ``apiKey``, ``X-Api-Key`` are
  one key); a key of up to four letters (``pwd``, ``ssn``, ``jwt``, ``auth``) must be a whole word
  of the name (``user_ssn`` but not ``classname``), a longer one may be part of it
  (``csrftoken``, ``user_password2``). A name that describes the secret rather than holding it
  (``password_length``, ``token_type``) is not sensitive, and ``True``/``False``/``None``/``""``
  under a sensitive key stay visible: they tell nothing and help debugging;
- cookies (a ``Cookie``/``Set-Cookie`` header, a cookies dict): every value, names kept;
- inside any string: URL userinfo (``postgres://app:********@db``), ``Bearer``/``Basic``
  credentials, AWS access key ids, JWTs, PEM private keys, "password X" in a sentence, and
  payment card numbers (13 to 19 digits, plain or grouped by spaces, dashes, dots or a URL-encoded
  query's plus signs, that pass the Luhn check and start like a card network's number);
- a list or tuple of digits that together form such a card number;
- a string holding JSON is parsed, scrubbed as a structure and written back.

Containers are walked to any depth (a structure deeper than ``_MAX_DEPTH`` is masked whole, so
nothing escapes by nesting). Numbers, UUIDs, hashes, dates and ordinary prose are left alone.
Source lines of frames are never changed: they are the app's code, shown as written.

Cost: the worker runs this on every event, so each string goes through cheap substring tests
before any expression, and strings seen clean before are remembered (bench/digest).

This module never raises on odd input (non-string keys, bytes, cycles): it masks what it
understands and passes the rest through.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Optional
from urllib.parse import quote_plus, unquote_plus, urlsplit, urlunsplit

from opbeat_agent.sql import sql_strip

MASK = "********"

# Matched case-insensitively, separators ignored; see the module docstring for the whole-word rule
# of short names. config.DEFAULT_SCRUB_KEYS is this tuple; the server's worker uses it as well.
DEFAULT_KEYS = (
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "pw",
    "secret",
    "token",
    "api_key",
    "auth",
    "authorization",
    "authentication",
    "credential",
    "cookie",
    "session",
    "csrf",
    "xsrf",
    "credit_card",
    "card_number",
    "cvv",
    "cvc",
    "ssn",
    "private_key",
    "access_key",
    "jwt",
    "dsn",
)

# The last word of a name that describes a secret without holding it: password_length, token_type.
_DESCRIPTIVE_WORDS = frozenset(
    "length len count min max type expires expiry expiration ttl age policy field fields required enabled at in".split()
)
_WHOLE_WORD_MAX = 4
_MAX_DEPTH = 64
_CONTAINERS = frozenset((dict, list, tuple, set, frozenset))
# Bounds of the per-scrubber caches (key name -> sensitive, strings known clean): a few MB at most,
# cleared when full rather than kept in LRU order.
_KEY_CACHE_MAX = 10_000
_CLEAN_MAX = 4096
_CLEAN_MAX_CHARS = 256
# Strings longer than this are scrubbed on their first part only and the rest masked: a 1 MB body
# must not cost the host app (or the worker) a second of regular expressions.
_MAX_TEXT_CHARS = 100_000

_KEY_WORDS_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_COOKIE_ATTRIBUTES = frozenset(
    "path domain expires max-age samesite secure httponly partitioned priority version comment".split()
)

# Credentials recognisable by their shape, whatever key they are under; one pass over the text,
# run only on a string that holds one of their markers (see Scrubber.text).
_SHAPES_RE = re.compile(
    r"""
    (?P<pem>-----BEGIN[ ](?:[A-Z0-9]+[ ])*PRIVATE[ ]KEY-----(?:.*?-----END[ ](?:[A-Z0-9]+[ ])*PRIVATE[ ]KEY-----|.*))
    | (?P<jwt>\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*)
    | (?P<aws>\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z0-9]{16}\b)
    | (?P<scheme>\b(?i:bearer|basic)[ \t]+)(?P<credential>[\w\-.~+/]{8,}=*)
    | (?P<cookie>\b(?i:set-cookie|cookie)[ \t]*:[ \t]*)(?P<cookies>[^\r\n]+)
    """,
    re.VERBOSE | re.DOTALL,
)
# Starts with a literal, so the engine finds candidates by a fast scan: the gate for the AWS branch.
_AWS_RE = re.compile(r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|PKA|ROA)[A-Z0-9]{16}")
_SHAPE_MARKERS_RE = re.compile("private key|eyj|bearer|basic|cookie")
_USERINFO_RE = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^\s:/?#@'\"<>]*)(?::(?P<password>[^\s/?#@'\"<>]*))?@"
)
# key=value, key: value, key='value', "key": "value" (and \"key\": \"value\" inside a repr of JSON).
_PAIR_RE = re.compile(
    r"""
    (?P<key>[A-Za-z_](?<![\w.\-][A-Za-z_])[\w.\-]*)(?:\\?["'])?
    [ \t]*(?:=(?!=)|:(?![/:]))[ \t]*
    (?P<value>
        \\"(?:[^\\]|\\(?!"))*(?:\\")?
      | "(?:[^"\\]|\\.)*"?
      | '(?:[^'\\]|\\.)*'?
      | (?:(?i:bearer|basic|digest)[ \t]+)?[^\s&;,'"<>()\[\]{}]+
    )
    """,
    re.VERBOSE,
)
# "invalid password hunter2", "token abc123 was rejected": the word after one of these is masked
# unless it is one of the ordinary words that follow them in messages.
_PHRASE_RE = re.compile(
    r"(?i)\b(?:password|passwd|passphrase|pwd|secret|token|api[ _-]?key)s?[ \t]+(?:(?:is|was|of)[ \t]+)?"
    r"(?P<value>\"[^\"]*\"?|'[^']*'?|[^\s'\"]+)"
)
_PHRASE_ORDINARY = frozenset(
    """is was are be been being for of and or to the a an in on at by with without from not no must should will
    would can cannot could may might has have had does did do too reset change changed expired expires expiry
    invalid incorrect wrong missing required mismatch mismatched field length hash hashed policy validation
    verification check checks checked failed fails failure error errors set updated update saved provided given
    type key value values manager store storage authentication auth login that this these those if but then when
    which who contains contain needs need rules strength attempt attempts request requests refresh endpoint url
    header cookie found were here there as it into via using used use reuse please again cannot now only
    generation generated rotation rotated revoked lifetime""".split()
)
_CARD_RE = re.compile(
    r"""
    \d(?<![\w.\-+]\d)
    (?:\d{12,18}
      | \d{3}(?P<s1>[ .\-+])\d{4}(?P=s1)\d{4}(?P=s1)\d{1,4}(?:(?P=s1)\d{3})?
      | \d{3}(?P<s2>[ .\-+])\d{6}(?P=s2)\d{4,5})
    (?!\w|[.\-+]\d)
    """,
    re.VERBOSE,
)
_FOUR_DIGITS_RE = re.compile(r"\d\d\d\d")
_URL_START_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        n = ord(char) - 48
        if index % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def card_number_is(digits: str) -> bool:
    """``digits`` (digits only) is a payment card number: 13 to 19 digits, starting as Visa (4),
    Mastercard (2, 5), Amex/Diners/JCB (3) or Discover/UnionPay/Maestro (6) do, passing Luhn.
    The first digit keeps epoch timestamps in ms and ns (which start with 1) from being masked."""
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_ok(digits)


def _key_normal(key: str) -> tuple:
    words = [word.lower() for word in _KEY_WORDS_RE.findall(key)]
    return "".join(words), words


def _credential_like(text: str) -> bool:
    """A token that is not a word: it has a digit, a symbol or a capital after its first letter."""
    return any(c.isdigit() or c in "=+/._-~" for c in text) or not (text[1:].islower())


def cookie_mask(header: str) -> str:
    """``a=1; b=2`` -> ``a=********; b=********``: every cookie's value, names and ``Set-Cookie``
    attributes (Path, Expires...) kept."""
    parts = header.split(";")
    for index, part in enumerate(parts):
        name, sep, value = part.partition("=")
        if name.strip().lower() in _COOKIE_ATTRIBUTES:
            continue
        if sep and value.strip() and value.strip() != MASK:
            parts[index] = f"{name}={MASK}"
        elif not sep and part.strip() and part.strip() != MASK:
            parts[index] = part[: len(part) - len(part.lstrip())] + MASK  # a value without a name
    return ";".join(parts)


class Scrubber:
    """``Scrubber(keys=DEFAULT_KEYS)``; ``keys`` extend or replace the defaults (the agent's
    ``scrub_keys`` option). ``card_numbers=False`` leaves digits alone; ``enabled=False`` makes
    every method return its input; ``json_input=True`` promises that every structure handed in
    is decoded JSON that the caller owns (the worker's input), which is then scrubbed in place
    without tracking cycles."""

    def __init__(
        self, *, keys: Iterable[str], card_numbers: bool = True, enabled: bool = True, json_input: bool = False
    ) -> None:
        self.enabled = enabled
        self.json_input = json_input
        self.card_numbers = card_numbers
        self._substrings: list = []
        self._words: set = set()
        for key in keys:
            if not isinstance(key, str) or not key:
                continue
            joined, words = _key_normal(key)
            if not joined:
                continue
            if len(joined) <= _WHOLE_WORD_MAX:
                self._words.add(joined)
            elif joined not in self._substrings:
                self._substrings.append(joined)
        # A string can hold a sensitive key only if, lower-cased and without separators, it holds
        # the key's name: these substring tests are the cheap gate that lets most strings skip the
        # pair and phrase expressions (bench/digest).
        names = sorted(set(self._substrings) | self._words)
        self._names_re = re.compile("|".join(map(re.escape, names))) if names else None
        # Strings seen to hold nothing to mask, so that the next event's copy of them (the same
        # reprs, headers and messages come again and again) costs one set lookup. Only clean
        # strings are kept, never a secret; cleared when full.
        self._clean: set = set()
        # The same for URLs and query strings, whose rules differ (a query is decoded first).
        self._clean_queries: set = set()
        self._key_cache: dict = {}

    # --- keys -------------------------------------------------------------------------------------

    def key_is_sensitive(self, key: Any) -> bool:
        if not self.enabled:
            return False
        try:
            cached = self._key_cache.get(key)
        except TypeError:  # an unhashable key: only a repr'd object's could be one
            cached = None
        if cached is not None:
            return cached
        try:
            joined, words = _key_normal(key if isinstance(key, str) else str(key))
        except Exception:  # noqa: BLE001 - a key whose str() raises is not one of ours
            return False
        sensitive = bool(joined) and (
            any(word in self._words for word in words) or any(s in joined for s in self._substrings)
        )
        if sensitive and len(words) > 1 and words[-1] in _DESCRIPTIVE_WORDS:
            sensitive = False
        if len(self._key_cache) >= _KEY_CACHE_MAX:
            self._key_cache.clear()
        try:
            self._key_cache[key] = sensitive
        except TypeError:
            pass
        return sensitive

    def masked(self, key: Any, value: Any) -> Any:
        """What a value under the sensitive ``key`` becomes."""
        if value is None or value is True or value is False or (type(value) is str and value in ("", MASK)):
            return value
        if "cookie" in str(key).lower():
            if isinstance(value, str):
                return cookie_mask(value)
            if isinstance(value, dict):
                return {k: v if v is None or v == "" else MASK for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [cookie_mask(v) if isinstance(v, str) else MASK for v in value]
        return MASK

    # --- strings ----------------------------------------------------------------------------------

    def text(self, value: Any) -> Any:
        """``value`` with every secret the rules recognise in a string masked."""
        if not self.enabled or not isinstance(value, str) or len(value) < 4:
            return value
        if value in self._clean:
            return value
        return self._remember(self._text(value), value, self._clean)

    @staticmethod
    def _remember(scrubbed: str, value: str, clean: set) -> str:
        """``scrubbed``; ``value`` is kept as known clean when scrubbing did not change it."""
        if scrubbed == value and len(value) <= _CLEAN_MAX_CHARS:
            if len(clean) >= _CLEAN_MAX:
                clean.clear()
            clean.add(value)
        return scrubbed

    def _text(self, value: str) -> str:
        if len(value) > _MAX_TEXT_CHARS:
            value = value[:_MAX_TEXT_CHARS] + MASK
        first = value[0]
        if (first == "{" or first == "[") and '"' in value:
            parsed = self._json(value)
            if parsed is not None:
                return parsed
        low = value.lower()
        if _SHAPE_MARKERS_RE.search(low) or ("A" in value and _AWS_RE.search(value)):
            value = _SHAPES_RE.sub(self._shape_mask, value)
        if "@" in value and "://" in value:
            value = _USERINFO_RE.sub(self._userinfo_mask, value)
        if self._names_re is not None:
            squeezed = low
            for separator in "_-. ":
                if separator in squeezed:
                    squeezed = squeezed.replace(separator, "")
            if self._names_re.search(squeezed):
                if "=" in value or ":" in value:
                    value = _PAIR_RE.sub(self._pair_mask, value)
                value = _PHRASE_RE.sub(self._phrase_mask, value)
        if self.card_numbers and len(value) >= 13 and _FOUR_DIGITS_RE.search(value):
            value = _CARD_RE.sub(self._card_mask, value)
        return value

    def _json(self, value: str) -> Optional[str]:
        """A JSON document's text scrubbed as a structure (its layout is kept when nothing in it
        was secret); None when it is not JSON."""
        stripped = value.rstrip()
        if stripped[-1:] not in ("}", "]"):
            return None
        try:
            parsed = json.loads(stripped)
        except (ValueError, RecursionError):
            return None
        scrubbed = self.value(parsed)
        if scrubbed == parsed:
            return value
        return json.dumps(scrubbed, ensure_ascii=False)

    @staticmethod
    def _shape_mask(match: re.Match) -> str:
        if match.group("scheme") is not None:
            credential = match.group("credential")
            return match.group("scheme") + MASK if _credential_like(credential) else match.group(0)
        if match.group("cookie") is not None:
            return match.group("cookie") + cookie_mask(match.group("cookies"))
        return MASK

    @staticmethod
    def _userinfo_mask(match: re.Match) -> str:
        scheme, user, password = match.group("scheme"), match.group("user"), match.group("password")
        if password:
            return f"{scheme}{user}:{MASK}@" if password != MASK else match.group(0)
        # A user name alone: long ones are tokens (https://<token>@github.com), short ones names (git@).
        return f"{scheme}{MASK}@" if len(user) >= 20 else match.group(0)

    def _pair_mask(self, match: re.Match) -> str:
        value = match.group("value")
        if not self.key_is_sensitive(match.group("key")):
            return match.group(0)
        start, end = match.start("value") - match.start(), match.end("value") - match.start()
        whole = match.group(0)
        if value.startswith('\\"'):
            inner, quote, closing = value[2:], '\\"', value.endswith('\\"') and len(value) >= 4
            inner = inner[:-2] if closing else inner
        elif value[:1] in ("'", '"'):
            quote = value[0]
            closing = len(value) >= 2 and value.endswith(quote)
            inner = value[1:-1] if closing else value[1:]
        else:
            quote, closing, inner = "", False, value
        if not inner or inner == MASK or inner in ("?", "%s"):
            return whole
        if "cookie" in match.group("key").lower() and "=" in inner:
            replaced = cookie_mask(inner)
        else:
            replaced = MASK
        return whole[:start] + quote + replaced + (quote if closing else "") + whole[end:]

    @staticmethod
    def _phrase_mask(match: re.Match) -> str:
        value = match.group("value")
        quote = value[0] if value[0] in "'\"" else ""
        core = value.strip("'\"").rstrip(".,;:!?)]}")
        if len(core) < 2 or core[0] in "=:*<%" or core.startswith(MASK) or core.lower() in _PHRASE_ORDINARY:
            return match.group(0)
        tail = value[len(quote) + len(core) :]
        return match.group(0)[: match.start("value") - match.start()] + quote + MASK + tail

    @staticmethod
    def _card_mask(match: re.Match) -> str:
        text = match.group(0)
        digits = text if text.isdigit() else "".join(c for c in text if c.isdigit())
        return MASK if card_number_is(digits) else text

    # --- structures -------------------------------------------------------------------------------

    def value(self, value: Any, max_items: Optional[int] = None) -> Any:
        """A scrubbed copy of a JSON-like structure (dicts, lists, tuples, sets, strings, numbers)
        walked to any depth; any other object is returned as it is (the caller reprs it and scrubs
        the text). ``max_items`` caps each container and the whole walk, for the agent's copies
        of arbitrary locals that are about to become a repr."""
        if not self.enabled:
            return value
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind not in _CONTAINERS:
            return value
        if self.json_input and max_items is None:
            return self._json_walk(value, 0)
        budget = [max_items * 100] if max_items else None
        return self._walk(value, 0, max_items, budget, set())

    def _json_walk(self, value: Any, depth: int) -> Any:
        """``_walk`` for decoded JSON, the worker's hot path: no cycles to track, containers are
        the caller's own and changed in place (no copy), and the two caches are read inline."""
        if depth >= _MAX_DEPTH:
            return MASK
        clean, keys = self._clean, self._key_cache
        if type(value) is dict:
            for key, item in value.items():
                sensitive = keys.get(key)
                if sensitive is None:
                    sensitive = self.key_is_sensitive(key)
                if sensitive:
                    value[key] = self.masked(key, item)
                elif type(item) is str:
                    if len(item) >= 4 and item not in clean:
                        value[key] = self.text(item)
                elif type(item) is dict or type(item) is list:
                    scrubbed = self._json_walk(item, depth + 1)
                    if scrubbed is not item:
                        value[key] = scrubbed
            return value
        if type(value) is not list:
            return self._walk(value, depth, None, None, set())
        if self.digits_are_card(value):
            return MASK
        for index, item in enumerate(value):
            if type(item) is str:
                if len(item) >= 4 and item not in clean:
                    value[index] = self.text(item)
            elif type(item) is list and len(item) == 2 and type(item[0]) is str and self.key_is_sensitive(item[0]):
                item[1] = self.masked(item[0], item[1])
            elif type(item) is dict or type(item) is list:
                scrubbed = self._json_walk(item, depth + 1)
                if scrubbed is not item:
                    value[index] = scrubbed
        return value

    def _walk(self, value: Any, depth: int, max_items: Optional[int], budget: Optional[list], active: set) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind not in _CONTAINERS:
            return value
        if depth >= _MAX_DEPTH:
            return MASK
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                return "..."
        if id(value) in active:
            return MASK  # a cycle: the object is already being walked above
        active.add(id(value))
        if kind is dict:
            out: Any = {}
            for index, (key, item) in enumerate(value.items()):
                if max_items is not None and index >= max_items:
                    out["..."] = f"{len(value) - max_items} more"
                    break
                if self.key_is_sensitive(key):
                    out[key] = self.masked(key, item)
                elif type(item) is str:
                    out[key] = self.text(item)  # the common leaf, without a call to _walk
                elif type(item) in _CONTAINERS:
                    out[key] = self._walk(item, depth + 1, max_items, budget, active)
                else:
                    out[key] = item
        else:
            items = list(value) if kind in (set, frozenset) else value
            if self.digits_are_card(items):
                out = MASK
            else:
                if max_items is not None and len(items) > max_items:
                    items = items[:max_items]
                out = []
                for item in items:
                    if type(item) is str:
                        out.append(self.text(item))
                    elif type(item) not in _CONTAINERS:
                        out.append(item)
                    elif (
                        type(item) in (tuple, list)
                        and len(item) == 2
                        and type(item[0]) is str
                        and self.key_is_sensitive(item[0])
                    ):
                        out.append(type(item)((item[0], self.masked(item[0], item[1]))))
                    else:
                        out.append(self._walk(item, depth + 1, max_items, budget, active))
                if max_items is not None and len(value) > max_items:
                    out.append(f"... {len(value) - max_items} more")
                if kind is tuple:
                    out = tuple(out)
        active.discard(id(value))
        return out

    def digits_are_card(self, items: Any) -> bool:
        """[4, 1, 1, 1, ...] or ["4111", "1111", "1111", "1111"]: the digits of a card number."""
        if not self.card_numbers or not 3 <= len(items) <= 19:
            return False
        parts = []
        for item in items:
            kind = type(item)
            if kind is int:
                if item < 0:
                    return False
                parts.append(str(item))
            elif kind is str and item.isascii() and item.isdigit():
                parts.append(item)
            else:
                return False
        single = all(len(p) == 1 for p in parts)
        grouped = 3 <= len(parts) <= 5 and all(len(p) >= 3 for p in parts)
        return (single or grouped) and card_number_is("".join(parts))

    # --- request parts ----------------------------------------------------------------------------

    def query_string(self, query: Any) -> Any:
        """Mask the values of sensitive keys in ``a=1&password=x`` and keep the rest as sent."""
        if not self.enabled or not query or not isinstance(query, str) or query in self._clean_queries:
            return query
        parts = []
        for part in query.split("&"):
            key, sep, raw = part.partition("=")
            try:
                decoded_key = unquote_plus(key)
            except Exception:  # noqa: BLE001 - an undecodable key is not one of ours
                decoded_key = key
            if sep and raw and self.key_is_sensitive(decoded_key):
                parts.append(f"{key}={MASK}")
                continue
            if sep:
                decoded = unquote_plus(raw)
                masked = self.text(decoded)
                if masked != decoded:
                    raw = quote_plus(masked, safe="*")
            parts.append(f"{key}{sep}{raw}")
        return self._remember("&".join(parts), query, self._clean_queries)

    def url(self, url: Any) -> Any:
        """A URL with its userinfo password and sensitive query values masked."""
        if not self.enabled or not isinstance(url, str) or url in self._clean_queries:
            return url
        if "?" not in url:
            return self.text(url)
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.text(url)
        rest = self.text(urlunsplit(parts._replace(query="")))
        try:
            parts = urlsplit(rest)
        except ValueError:
            return self.text(url)
        scrubbed = urlunsplit(parts._replace(query=self.query_string(urlsplit(url).query)))
        return self._remember(scrubbed, url, self._clean_queries)

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
                except (ValueError, RecursionError):
                    pass  # a truncated or non-JSON body is scrubbed as text
            elif "=" in data and " " not in data.strip() and "\n" not in data:
                return self.query_string(data)
            return self.text(data)
        return self.value(data)

    def sql_or_url(self, text: Any) -> Any:
        """A span's detail line: a URL (an HTTP call) scrubbed as one, SQL with its literals removed."""
        if not self.enabled or not isinstance(text, str) or not text:
            return text
        if _URL_START_RE.match(text):
            return self.url(text)
        return sql_strip(text)


def scrubber_default(*, json_input: bool = False) -> Scrubber:
    """The scrubber with the default rules; the server's worker uses this one on decoded JSON."""
    return Scrubber(keys=DEFAULT_KEYS, json_input=json_input)


# --- events ---------------------------------------------------------------------------------------

# Where a frame points in the code, and the code itself: never runtime data, so never masked (a
# source line like `password = form["password"]` must read as written).
_FRAME_CODE_KEYS = frozenset(
    "abs_path filename module function lineno colno in_app library_frame pre_context context_line post_context".split()
)
# Top-level fields that identify the event or come from the agent's own configuration.
_EVENT_IDENTITY_KEYS = frozenset(
    "organization_id app_id level timestamp client_supplied_id culprit logger release environment platform".split()
)
_PLACEHOLDER_RE = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[diouxXeEfFgGcrsa]")


def _frame_scrub(scrubber: Scrubber, frame: Any) -> Any:
    if not isinstance(frame, dict):
        return scrubber.value(frame)
    return {key: item if key in _FRAME_CODE_KEYS else scrubber.value(item) for key, item in frame.items()}


def _stacktrace_scrub(scrubber: Scrubber, stacktrace: Any) -> Any:
    if not isinstance(stacktrace, dict):
        return scrubber.value(stacktrace)
    out = {}
    for key, item in stacktrace.items():
        if key == "frames" and isinstance(item, list):
            out[key] = [_frame_scrub(scrubber, frame) for frame in item]
        else:
            out[key] = scrubber.value(item)
    return out


def _exception_scrub(scrubber: Scrubber, exception: Any) -> Any:
    if not isinstance(exception, dict):
        return scrubber.value(exception)
    out = {}
    for key, item in exception.items():
        if key in ("type", "module"):
            out[key] = item
        elif key == "stacktrace":
            out[key] = _stacktrace_scrub(scrubber, item)
        elif key in ("chain", "values") and isinstance(item, list):
            out[key] = [_exception_scrub(scrubber, cause) for cause in item]
        else:
            out[key] = scrubber.value(item)
    return out


def _param_message_scrub(scrubber: Scrubber, param_message: Any) -> Any:
    """A log call's template and arguments: an argument is masked where the template puts it after
    a sensitive word ("login failed for %s with password %s"), besides the usual rules."""
    if not isinstance(param_message, dict):
        return scrubber.value(param_message)
    out = scrubber.value(param_message)
    template, params = param_message.get("message"), out.get("params")
    if not isinstance(template, str) or not isinstance(params, list) or "%" not in template:
        return out
    markers = []

    def marker(match: re.Match) -> str:
        if match.group(0).startswith("%("):
            return match.group(0)  # named: params is a dict then, masked by key above
        markers.append(f"\x02{len(markers)}\x03")
        return markers[-1]

    marked = _PLACEHOLDER_RE.sub(marker, template)
    if markers:
        masked = scrubber.text(marked)
        out["params"] = [
            MASK if index < len(markers) and markers[index] not in masked and param not in (None, "") else param
            for index, param in enumerate(params)
        ]
    return out


def _http_scrub(scrubber: Scrubber, http: Any) -> Any:
    if not isinstance(http, dict):
        return scrubber.value(http)
    out = {}
    for key, item in http.items():
        if key == "url":
            out[key] = scrubber.url(item)
        elif key == "query_string":
            out[key] = scrubber.query_string(item) if isinstance(item, str) else scrubber.value(item)
        elif key == "data":
            out[key] = scrubber.body(item)
        elif key == "cookies":
            out[key] = scrubber.masked("cookies", item) if isinstance(item, (str, dict, list)) else item
        else:
            out[key] = scrubber.value(item)
    return out


def event_scrub(*, event: dict, scrubber: Scrubber) -> dict:
    """Scrub an errors body in place (and return it): frame locals, exception and log messages,
    log arguments, the request (URL, query string, body, headers, cookies, environ), ``extra``,
    ``user``, tags and any field a client adds; never the event's identity or the source lines."""
    if not scrubber.enabled or not isinstance(event, dict):
        return event
    for key, item in list(event.items()):
        if key in _EVENT_IDENTITY_KEYS:
            continue
        if key == "stacktrace":
            event[key] = _stacktrace_scrub(scrubber, item)
        elif key == "exception":
            event[key] = _exception_scrub(scrubber, item)
        elif key == "http":
            event[key] = _http_scrub(scrubber, item)
        elif key == "param_message":
            event[key] = _param_message_scrub(scrubber, item)
        elif key == "fingerprint":
            continue  # the app's own grouping key: changing it would split or merge its issues
        else:
            event[key] = scrubber.value(item)
    return event


def span_scrub(*, span: dict, scrubber: Scrubber) -> dict:
    """Scrub a trace's span in place (and return it): its signature, its SQL or URL, its stack."""
    if not scrubber.enabled or not isinstance(span, dict):
        return span
    for key, item in list(span.items()):
        if key == "signature":
            span[key] = scrubber.text(item)
        elif key == "sql":
            span[key] = scrubber.sql_or_url(item)
        elif key == "stack" and isinstance(item, list):
            span[key] = [_frame_scrub(scrubber, frame) for frame in item]
        elif key == "extra" and isinstance(item, dict):
            span[key] = {
                k: scrubber.sql_or_url(v) if k in ("sql", "url") else scrubber.value(v) for k, v in item.items()
            }
    return span
'''


def _frozen_module() -> types.ModuleType:
    module = types.ModuleType("opbeat_agent_scrub_frozen")
    sys.modules[module.__name__] = module  # dataclass-free, but annotations resolve through it
    exec(compile(FROZEN_SOURCE, "<frozen opbeat_agent.scrub>", "exec"), module.__dict__)
    return module


frozen = _frozen_module()


# --- Random data built from what the rules look for ------------------------------------------------

KEYS = [
    "password", "Password", "user_password2", "passwd", "pwd", "pw", "ssn", "user_ssn", "jwt", "auth", "X-Api-Key",
    "apiKey", "api_key", "csrftoken", "sessionid", "Cookie", "Set-Cookie", "cookies", "token_type", "password_length",
    "secret", "classname", "name", "user", "id", "query", "QUERY_STRING", "HTTP_COOKIE", "HTTP_AUTHORIZATION", "url",
    "data", "headers", "message", "value", "vars", "frames", "env", "params", "card", "digits", "dsn", "passphrase",
    "pass", "a", "", "p.w", "pass word", "AKIA",
]  # fmt: skip
FRAGMENTS = [
    "password=hunter2", "password: hunter2", "'password': 'pw'", '"password": "pw"', '\\"token\\": \\"abc\\"',
    "api_key=abc123&q=1", "foo=bar&password=pw", "sessionid=abc; theme=dark", "Cookie: a=1; b=2", "Set-Cookie: s=x; Path=/",
    "Authorization: Bearer abcDEF123456", "Basic dXNlcjpwYXNz", "bearer token", "postgres://app:s3cr3t@db:5432/x",
    "https://ghp_0123456789abcdefghij@github.com/x", "git@github.com", "AKIAZ7QW3ERTY5UIOP12", "ASIA1234567890ABCDEF",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl", "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----",
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "4111.1111.1111.1111", "4111+1111+1111+1111",
    "378282246310005", "1700000000000", "4111111111111112", "invalid password hunter2", "token abc123 was rejected",
    "password is required", "the secret 'x9'", "api key s3cret", "<Request 'http://h/e?password=pw' [GET]>",
    "x == 1 and y=2", "%s", "?", "********", "password=", "pwd=%(pw)s", "ssn: 078-05-1120", "user_ssn=1",
    '{"password": "json-pw"}', '["a", {"token": "t"}]', "[1, 2]", "{not json", "classname=Foo", "token_type=bearer",
    "http://u:p@h", "dsn=https://k@sentry.io/1", "a", "", " ", "\n", "\t", "=", ":", "&", ";", "é", "İ", "ß", "\u2028",
]  # fmt: skip
fragment = (
    st.sampled_from(FRAGMENTS) | st.text(max_size=12) | st.text(alphabet="pasword_-:= &;'\"4 1tokenAKI", max_size=20)
)
texts = st.lists(fragment, max_size=5).map("".join) | st.sampled_from(FRAGMENTS)
keys = st.sampled_from(KEYS) | st.text(max_size=10)
scalars = (
    texts
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.sampled_from([None, True, False, 0, 4, 1.5, -0.0])
    | st.floats()  # NaN and the infinities too: orjson writes them as null
)
digit_lists = st.lists(st.integers(min_value=0, max_value=9), min_size=3, max_size=19) | st.lists(
    st.sampled_from(["4111", "1111", "0004", "5500", "0000", "12", "abc"]), min_size=3, max_size=5
)
json_like = st.recursive(
    scalars | digit_lists,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(keys, inner, max_size=6)
        | st.tuples(st.sampled_from(KEYS), inner).map(list)
    ),
    max_leaves=30,
)
# The agent's own input: any Python structure, tuples and sets included.
python_like = st.recursive(
    scalars | digit_lists,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(keys | st.integers(), inner, max_size=6)
        | st.tuples(st.sampled_from(KEYS), inner)
        | st.lists(inner, max_size=4).map(tuple)
        | st.frozensets(texts, max_size=3)
    ),
    max_leaves=30,
)
frames = st.fixed_dictionaries(
    {"filename": texts, "function": texts, "context_line": texts, "vars": st.dictionaries(keys, json_like, max_size=6)},
    optional={"pre_context": st.lists(texts, max_size=3), "module": texts, "lineno": st.integers(0, 999)},
)
events = st.fixed_dictionaries(
    {},
    optional={
        "message": texts,
        "culprit": texts,
        "exception": st.fixed_dictionaries({"type": texts, "value": texts}, optional={"module": texts}),
        "stacktrace": st.fixed_dictionaries({"frames": st.lists(frames, max_size=4)}),
        "http": st.fixed_dictionaries(
            {},
            optional={
                "url": texts,
                "query_string": texts | json_like,
                "data": texts | json_like,
                "cookies": texts | json_like,
                "headers": st.dictionaries(keys, texts, max_size=4),
                "env": st.dictionaries(keys, texts, max_size=4),
            },
        ),
        "param_message": st.fixed_dictionaries({"message": texts, "params": st.lists(texts | st.none(), max_size=4)}),
        "extra": json_like,
        "user": st.dictionaries(keys, json_like, max_size=4),
        "tags": json_like,
        "fingerprint": json_like,
    },
)
spans = st.fixed_dictionaries(
    {},
    optional={
        "signature": texts,
        "sql": texts,
        "stack": st.lists(frames, max_size=2),
        "extra": st.dictionaries(st.sampled_from(["sql", "url", "password", "note"]), texts | json_like, max_size=3),
    },
)

# Kept across examples, as the worker keeps its scrubber: a cache that answers wrongly shows.
CURRENT = {json_input: scrub.Scrubber(keys=DEFAULT_SCRUB_KEYS, json_input=json_input) for json_input in (False, True)}


# The reference is made anew for each example: the frozen module's caches had one fault (a query
# string remembered clean was taken as a clean URL), which the history of examples would expose.
def reference() -> object:
    return frozen.Scrubber(keys=DEFAULT_SCRUB_KEYS)


CUSTOM_KEYS = ("pin", "x_internal", "Account Number")
CUSTOM = scrub.Scrubber(keys=CUSTOM_KEYS, card_numbers=False)


def custom_reference() -> object:
    return frozen.Scrubber(keys=CUSTOM_KEYS, card_numbers=False)


SETTINGS = hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(current, reference) -> None:
    assert repr(current) == repr(reference)


def json_copies(value):
    """Two decoded copies of a JSON document, as the worker gets one from the queue."""
    encoded = json.dumps(value)
    return json.loads(encoded), json.loads(encoded)


@SETTINGS
@given(event=events)
def test_events_are_scrubbed_as_before(event):
    for json_input in (False, True):
        mine, theirs = json_copies(event) if json_input else (copy.deepcopy(event), copy.deepcopy(event))
        same(
            scrub.event_scrub(event=mine, scrubber=CURRENT[json_input]),
            frozen.event_scrub(event=theirs, scrubber=reference()),
        )


@SETTINGS
@given(value=json_like)
def test_decoded_json_is_scrubbed_as_before(value):
    mine, theirs = json_copies(value)
    same(CURRENT[True].value(mine), reference().value(theirs))
    same(CURRENT[False].body(json.dumps(value)), reference().body(json.dumps(value)))


@SETTINGS
@given(value=python_like, max_items=st.sampled_from([None, 2, 10]))
def test_python_values_are_scrubbed_as_before(value, max_items):
    same(CURRENT[False].value(copy.deepcopy(value), max_items), reference().value(copy.deepcopy(value), max_items))
    same(CUSTOM.value(copy.deepcopy(value)), custom_reference().value(copy.deepcopy(value)))


@SETTINGS
@given(text=texts)
def test_strings_are_scrubbed_as_before(text):
    for mine, theirs in ((CURRENT[True], reference), (CURRENT[False], reference), (CUSTOM, custom_reference)):
        # A fresh reference for each call (see reference()); mine keeps its caches throughout.
        same(mine.text(text), theirs().text(text))
        same(mine.query_string(text), theirs().query_string(text))
        same(mine.url(text), theirs().url(text))
        same(mine.body(text), theirs().body(text))
        same(mine.sql_or_url(text), theirs().sql_or_url(text))
        same(mine.key_is_sensitive(text), theirs().key_is_sensitive(text))


@SETTINGS
@given(span=spans)
def test_spans_are_scrubbed_as_before(span):
    mine, theirs = json_copies(span)
    same(scrub.span_scrub(span=mine, scrubber=CURRENT[True]), frozen.span_scrub(span=theirs, scrubber=reference()))


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*_POST_*.json")), ids=lambda path: path.stem)
def test_captured_bodies_are_scrubbed_as_before(path):
    body = orjson.loads(path.read_bytes())
    for _ in range(2):  # the second time through the caches
        for json_input in (False, True):
            mine, theirs = json_copies(body)
            if "transactions" in path.name:
                same(CURRENT[json_input].value(mine), reference().value(theirs))
            else:
                same(
                    scrub.event_scrub(event=mine, scrubber=CURRENT[json_input]),
                    frozen.event_scrub(event=theirs, scrubber=reference()),
                )


class Text(str):
    pass


@pytest.mark.parametrize(
    "seen,then",
    [
        # orjson writes NaN as null and a subclass of str as a str: the first must not vouch for
        # the second. (Tuples, which it writes as lists, are outside json_input's promise.)
        ({"password": None, "n": 1}, {"password": float("nan"), "n": 1}),
        ({"note": Text("password=pw")}, {"note": "password=pw"}),
        ({"cookie": None}, {"cookie": float("inf")}),
        # Remembered masked, the structure comes back decoded from text: a NaN must not become null.
        ({"q": "password=pw", "n": None}, {"q": "password=pw", "n": float("nan")}),
        ({"q": "password=pw", "n": float("-inf")}, {"q": "password=pw", "n": None}),
    ],
)
def test_a_structure_seen_before_vouches_only_for_its_equal(seen, then):
    # Fresh scrubbers: the shared ones may have stopped remembering structures after the random
    # examples above, which rarely repeat.
    mine = scrub.Scrubber(keys=DEFAULT_SCRUB_KEYS, json_input=True)
    theirs = frozen.Scrubber(keys=DEFAULT_SCRUB_KEYS, json_input=True)
    for _ in range(3):
        for value in (seen, then):
            same(mine.value(copy.deepcopy(value)), theirs.value(copy.deepcopy(value)))
            event = {"extra": copy.deepcopy(value), "stacktrace": {"frames": [{"vars": copy.deepcopy(value)}]}}
            same(
                scrub.event_scrub(event=copy.deepcopy(event), scrubber=mine),
                frozen.event_scrub(event=copy.deepcopy(event), scrubber=theirs),
            )
