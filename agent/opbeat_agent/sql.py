"""SQL statements as span signatures and as sendable text.

``sql_signature`` names a statement by what it does and to what ("SELECT FROM orders",
"INSERT INTO payments", "UPDATE users"), which groups the same query across parameter values;
``sql_strip`` replaces literals (strings, numbers) with ``?`` so values typed inline, which may be
personal data, never leave the process. Both are lenient tokenisers, not parsers: on SQL they do
not understand they fall back to the first keyword and the text with literals removed.

``sql_describe`` is what instrumentation calls on every query: an app runs the same few hundred
statements over and over (parameters are separate), so both results are kept per statement text
in a bounded table; the regular expressions then run once per statement, not once per query
(they cost more than the agent's whole span bookkeeping, measured with bench/agent_overhead).
"""

from __future__ import annotations

import re

_MAX_SQL_CHARS = 10_000
_LITERAL_RE = re.compile(
    r"""
    '(?:[^']|'')*'                      # 'string', with '' escapes
    | (?<![\w."])\b\d+(?:\.\d+)?\b      # a number not part of an identifier
    """,
    re.VERBOSE,
)
_COMMENT_RE = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_IDENT = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$]+)(?:\.(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$]+))*'
_FROM_RE = re.compile(rf"\bFROM\s+({_IDENT})", re.IGNORECASE)
_INTO_RE = re.compile(rf"\bINTO\s+({_IDENT})", re.IGNORECASE)
_UPDATE_RE = re.compile(rf"^\s*UPDATE\s+(?:ONLY\s+)?({_IDENT})", re.IGNORECASE)


def _unquote(identifier: str) -> str:
    return re.sub(r'["`\[\]]', "", identifier)


def sql_signature(sql: str) -> str:
    text = _COMMENT_RE.sub(" ", sql[:_MAX_SQL_CHARS]).strip()
    if not text:
        return ""
    first = text.split(None, 1)[0].upper().rstrip(";")
    if first in ("SELECT", "DELETE"):
        match = _FROM_RE.search(text)
        return f"{first} FROM {_unquote(match.group(1))}" if match else first
    if first in ("INSERT", "REPLACE"):
        match = _INTO_RE.search(text)
        return f"{first} INTO {_unquote(match.group(1))}" if match else first
    if first == "UPDATE":
        match = _UPDATE_RE.search(text)
        return f"UPDATE {_unquote(match.group(1))}" if match else first
    if first == "WITH":
        # A CTE: what the statement finally does is the last SELECT/INSERT/UPDATE/DELETE.
        match = _FROM_RE.findall(text)
        return f"WITH ... FROM {_unquote(match[-1])}" if match else "WITH"
    return first


def sql_strip(sql: str) -> str:
    """The statement with literal values replaced by ``?`` and cut at 10,000 characters."""
    return _LITERAL_RE.sub("?", sql[:_MAX_SQL_CHARS])


# Statement text -> (signature, extra). Cleared when full rather than kept in LRU order: an app
# whose statements embed their values (so never repeat) must not pay for bookkeeping either.
_DESCRIBED: dict = {}
_DESCRIBED_MAX = 2000


def sql_describe(sql: str) -> tuple:
    """``(signature, {"sql": stripped})`` of a statement: a query span's signature and extra.
    The dict is shared by every span of the same statement, so it must never be modified."""
    described = _DESCRIBED.get(sql)
    if described is None:
        if len(_DESCRIBED) >= _DESCRIBED_MAX:
            _DESCRIBED.clear()
        described = _DESCRIBED[sql] = (sql_signature(sql), {"sql": sql_strip(sql)})
    return described
