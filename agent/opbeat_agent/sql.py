"""SQL statements as span signatures and as sendable text.

``sql_signature`` names a statement by what it does and to what ("SELECT FROM orders",
"INSERT INTO payments", "UPDATE users"), which groups the same query across parameter values;
``sql_strip`` replaces literals (strings, numbers) with ``?`` so values typed inline, which may be
personal data, never leave the process. Both are lenient tokenisers, not parsers: on SQL they do
not understand they fall back to the first keyword and the text with literals removed.
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
