"""Scrubbing: the one set of rules that masks secrets in an event, in the agent before an event
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

Cost: the worker runs this on every event (bench/digest), so each string goes through one search
for everything the expressions look for before any of them runs; strings seen clean are
remembered, short strings seen masked are remembered by a keyed digest (never as text), and
the worker's decoded JSON is changed in place, a structure seen before being recognised by its
orjson serialization (or that text's keyed digest) when orjson is installed. None of this
changes what is masked
(tests/security/test_scrub_equivalence.py compares it with the rules before these shortcuts).

This module never raises on odd input (non-string keys, bytes, cycles): it masks what it
understands and passes the rest through.
"""

from __future__ import annotations

import json
import os
import re
from hashlib import blake2b
from typing import Any, Iterable, Optional
from urllib.parse import quote_plus, unquote_plus, urlsplit, urlunsplit

from .sql import sql_strip

try:  # the server's worker has it; in an app without it, decoded JSON is simply walked
    from orjson import OPT_PASSTHROUGH_SUBCLASS as _OPT_PASSTHROUGH_SUBCLASS, dumps as _json_dumps, loads as _json_loads
except ImportError:  # pragma: no cover - depends on the app's environment
    _json_dumps, _json_loads, _OPT_PASSTHROUGH_SUBCLASS = None, None, 0

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
_MASKED_MAX = 4096
# Structures known (_json_tree): at most 1024 clean and 1024 masked ones of up to 4 kB each.
_TREES_MAX = 1024
_TREE_MAX_BYTES = 4096
_TREES_SAMPLE = 256
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
_SHAPE_MARKERS_SQUEEZED = ("privatekey", "eyj", "bearer", "basic", "cookie")
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
# Every form _CARD_RE matches holds eight digits in a row or two fours around one separator, so
# a string without them (an object's address in a repr has four digits in a row quite often)
# skips the card expression.
_CARD_GATE_RE = re.compile(r"\d{4}[ .+\-]?\d{4}")
_CARD_GATE_SQUEEZED = r"\d{4}\+?\d{4}"  # the same once " ", "." and "-" are removed
_URL_START_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")


def _any_of(words: Iterable[str]) -> str:
    """An expression that finds whether any of ``words`` occurs (not which, nor the longest): the
    words as a tree of their shared prefixes, which the engine tries in a fraction of the time
    of a flat alternation (measured: about a third on short strings), and with a word that is a
    prefix of another standing for both."""
    tree: dict = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def branch(node: dict) -> str:
        if "" in node:
            return ""
        options = [re.escape(char) + branch(child) for char, child in sorted(node.items())]
        return options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"

    return branch(tree) if tree else "(?!)"


def _squeezed(low: str) -> str:
    for separator in "_-. ":
        if separator in low:
            low = low.replace(separator, "")
    return low


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
        self._names_re = re.compile(_any_of(names)) if names else None
        # One search, in the squeezed string, for what three gates look for: the key names, the
        # shape markers and the card gate's digits as they read without separators (a superset of
        # finding them in the lower-cased string or in the string). A string that holds none of
        # them skips all three (see _text_gated).
        gate = _any_of([*names, *_SHAPE_MARKERS_SQUEEZED])
        self._gate_re = re.compile(f"{gate}|{_CARD_GATE_SQUEEZED}" if card_numbers else gate)
        # Strings seen to hold nothing to mask, so that the next event's copy of them (the same
        # reprs, headers and messages come again and again) costs one set lookup. Only clean
        # strings are kept, never a secret; cleared when full.
        self._clean: set = set()
        # The same for query strings and for URLs, each with its own rules (a query is decoded
        # first, a URL's path is scrubbed as text), so each its own set: "4111111111111111" is a
        # clean query string but a URL that is a card number.
        self._clean_queries: set = set()
        self._clean_urls: set = set()
        self._key_cache: dict = {}
        # Short strings that did hold something to mask (the same request repr with its query
        # string in every event of a view), by a keyed digest of the string -> the masked string,
        # so that no secret is kept, not even as a plain hash open to guessing.
        self._masked: dict = {}
        self._digest_key = os.urandom(16)
        # Decoded JSON structures seen before, clean by their serialized text, masked by its
        # keyed digest (see _json_tree), and how often that has paid lately.
        self._clean_trees: set = set()
        self._masked_trees: dict = {}
        self._trees_tried = self._trees_found = self._trees_off = 0

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
        return self._text_new(value)

    def _text_new(self, value: str) -> str:
        """``text`` for a string of 4 or more characters not known clean."""
        if len(value) > _CLEAN_MAX_CHARS:
            return self._text(value)
        first = value[0]
        if not ((first == "{" or first == "[") and '"' in value) and not self._text_gated(value):
            if len(self._clean) >= _CLEAN_MAX:
                self._clean.clear()
            self._clean.add(value)
            return value
        digest = blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16, key=self._digest_key).digest()
        known = self._masked.get(digest)
        if known is not None:
            return known
        scrubbed = self._text(value)
        if scrubbed == value:
            if len(self._clean) >= _CLEAN_MAX:
                self._clean.clear()
            self._clean.add(value)
        else:
            if len(self._masked) >= _MASKED_MAX:
                self._masked.clear()
            self._masked[digest] = scrubbed
        return scrubbed

    def _text_gated(self, value: str) -> bool:
        """Whether any rule of ``_text`` past its JSON case can change ``value`` (not JSON, not
        truncated): False is exact, True means the rules must be run."""
        return bool(
            self._gate_re.search(_squeezed(value.lower()))
            or ("A" in value and _AWS_RE.search(value))
            or ("@" in value and "://" in value)
        )

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
            if self._names_re.search(_squeezed(low)):
                if "=" in value or ":" in value:
                    value = _PAIR_RE.sub(self._pair_mask, value)
                value = _PHRASE_RE.sub(self._phrase_mask, value)
        if self.card_numbers and len(value) >= 13 and _CARD_GATE_RE.search(value):
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
        # The copying walk, also for decoded JSON: an in-place walk would leave nothing to compare
        # with, and the secret-holding text would be kept as it came.
        scrubbed = self._walk(parsed, 0, None, None, set())
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
            return self._json_tree(value) if kind is dict or kind is list else self._json_walk(value, 0, [False, False])
        budget = [max_items * 100] if max_items else None
        return self._walk(value, 0, max_items, budget, set())

    def _json_tree(self, value: Any) -> Any:
        """``_json_walk`` from the top, skipped for a structure seen before: the same locals,
        headers and environ come in event after event, and serializing one (orjson, in C) costs
        a fraction of walking it. A structure is known by its serialized text when it held
        nothing to mask (the set of clean structures), or by a keyed digest of that text, never
        the text, when it did (-> the scrubbed structure's text, decoded again for each event).

        orjson's text stands for one structure only when it is plain JSON, which is what
        ``json_input`` promises (a tuple is written as a list): orjson refuses subclasses,
        integers past 64 bits and lone surrogates (walked then, never remembered); a walk that
        met a tuple or a set, or anything but a string under a sensitive key (orjson writes
        ``NaN`` as ``null``, which a sensitive key keeps), is not remembered; a masked structure
        is kept only when its text decodes back to it and is looked up only when its text holds
        no ``null``. When fewer than one in eight structures is found known, the serializing is
        left off for a while."""
        # Per call, not on self: a threaded worker walks several events at once.
        state = [False, False]  # [changed, not to be remembered]
        if _json_dumps is None:
            return self._json_walk(value, 0, state)
        if self._trees_off > 0:
            self._trees_off -= 1
            return self._json_walk(value, 0, state)
        try:
            key = _json_dumps(value, option=_OPT_PASSTHROUGH_SUBCLASS)
        except Exception:  # noqa: BLE001 - not plain JSON: walked, never remembered
            return self._json_walk(value, 0, state)
        self._trees_tried += 1
        if key in self._clean_trees:
            self._trees_found += 1
            return value
        # A masked structure comes back decoded from text, so only when its text cannot hide a
        # NaN or an infinity (both written as null).
        small = len(key) <= _TREE_MAX_BYTES and b"null" not in key
        if small:
            digest = blake2b(key, digest_size=16, key=self._digest_key).digest()
            known = self._masked_trees.get(digest)
            if known is not None:
                self._trees_found += 1
                return _json_loads(known)
        if self._trees_tried >= _TREES_SAMPLE:
            if self._trees_found * 8 < self._trees_tried:
                self._trees_off = _TREES_SAMPLE * 8
            self._trees_tried = self._trees_found = 0
        scrubbed = self._json_walk(value, 0, state)
        if len(key) <= _TREE_MAX_BYTES and not state[1]:
            if not state[0] and scrubbed is value:
                if len(self._clean_trees) >= _TREES_MAX:
                    self._clean_trees.clear()
                self._clean_trees.add(key)
            else:
                try:
                    text = _json_dumps(scrubbed, option=_OPT_PASSTHROUGH_SUBCLASS)
                    exact = _json_loads(text) == scrubbed
                except Exception:  # noqa: BLE001 - not plain JSON: not remembered
                    exact = False
                if small and exact and len(text) <= _TREE_MAX_BYTES:
                    if len(self._masked_trees) >= _TREES_MAX:
                        self._masked_trees.clear()
                    self._masked_trees[digest] = text
        return scrubbed

    def _json_walk(self, value: Any, depth: int, state: list) -> Any:
        """``_walk`` for decoded JSON, the worker's hot path: no cycles to track, containers are
        the caller's own and changed in place (no copy), and the two caches are read inline.
        Sets ``state[0]`` when anything changed, ``state[1]`` when the result may not follow from
        orjson's text of ``value`` alone (see ``_json_tree``)."""
        if depth >= _MAX_DEPTH:
            state[0] = True
            return MASK
        clean, keys = self._clean, self._key_cache
        if type(value) is dict:
            for key, item in value.items():
                sensitive = keys.get(key)
                if sensitive is None:
                    sensitive = self.key_is_sensitive(key)
                kind = type(item)
                if sensitive:
                    masked = self.masked(key, item)
                    if kind is not str:
                        state[0] = state[1] = True
                        value[key] = masked
                    elif masked != item:
                        state[0] = True
                        value[key] = masked
                elif kind is str:
                    if len(item) >= 4 and item not in clean:
                        scrubbed = self._text_new(item)
                        if scrubbed != item:
                            state[0] = True
                            value[key] = scrubbed
                elif kind is dict or kind is list:
                    scrubbed = self._json_walk(item, depth + 1, state)
                    if scrubbed is not item:
                        value[key] = scrubbed
                elif kind in _CONTAINERS:
                    state[1] = True  # a tuple or a set: not JSON, left as it is
            return value
        if type(value) is not list:
            state[0] = state[1] = True
            return self._walk(value, depth, None, None, set())
        if self.digits_are_card(value):
            state[0] = True
            return MASK
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if len(item) >= 4 and item not in clean:
                    scrubbed = self._text_new(item)
                    if scrubbed != item:
                        state[0] = True
                        value[index] = scrubbed
            elif kind is list and len(item) == 2 and type(item[0]) is str and self.key_is_sensitive(item[0]):
                masked = self.masked(item[0], item[1])
                if type(item[1]) is not str:
                    state[0] = state[1] = True
                    item[1] = masked
                elif masked != item[1]:
                    state[0] = True
                    item[1] = masked
            elif kind is dict or kind is list:
                scrubbed = self._json_walk(item, depth + 1, state)
                if scrubbed is not item:
                    value[index] = scrubbed
            elif kind in _CONTAINERS:
                state[1] = True
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
        if not self.enabled or not isinstance(url, str) or url in self._clean_urls:
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
        return self._remember(scrubbed, url, self._clean_urls)

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
    if scrubber.json_input:
        # The worker's decoded JSON: changed in place, and the walk entered directly; a frame's
        # locals are most of an event.
        for key, item in frame.items():
            if key not in _FRAME_CODE_KEYS:
                kind = type(item)
                if kind is dict or kind is list:
                    scrubbed = scrubber._json_tree(item)
                elif kind is str:
                    scrubbed = scrubber.text(item)
                else:
                    continue
                if scrubbed is not item:
                    frame[key] = scrubbed
        return frame
    return {key: item if key in _FRAME_CODE_KEYS else scrubber.value(item) for key, item in frame.items()}


def _stacktrace_scrub(scrubber: Scrubber, stacktrace: Any) -> Any:
    if not isinstance(stacktrace, dict):
        return scrubber.value(stacktrace)
    # Decoded JSON is the caller's own and is changed in place; anything else is copied.
    out = stacktrace if scrubber.json_input else {}
    for key, item in stacktrace.items():
        if key == "frames" and isinstance(item, list):
            if scrubber.json_input:
                for index, frame in enumerate(item):
                    scrubbed = _frame_scrub(scrubber, frame)
                    if scrubbed is not frame:
                        item[index] = scrubbed
                continue
            out[key] = [_frame_scrub(scrubber, frame) for frame in item]
        else:
            out[key] = scrubber.value(item)
    return out


def _exception_scrub(scrubber: Scrubber, exception: Any) -> Any:
    if not isinstance(exception, dict):
        return scrubber.value(exception)
    out = exception if scrubber.json_input else {}
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
    template = param_message.get("message")  # as sent: decoded JSON is scrubbed in place below
    out = scrubber.value(param_message)
    params = out.get("params")
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
    out = http if scrubber.json_input else {}
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
