"""SQL statements as span signatures and as sendable text.

``sql_signature`` names a statement by what it does and to what ("SELECT FROM orders",
"INSERT INTO payments", "UPDATE users"), which groups the same query across parameter values;
``sql_strip`` replaces literals (strings in every quoting the instrumented dialects accept, hex and
bit strings, numbers) with ``?`` so values typed inline, which may be personal data or secrets,
never leave the process; the server's worker applies it again to whatever any client sent. Both are lenient tokenisers, not parsers: on SQL they do
not understand they fall back to the first keyword and the text with literals removed.

``sql_describe`` is what instrumentation calls on every query: an app runs the same few hundred
statements over and over (parameters are separate), so both results are kept per statement text
in a bounded table; the regular expressions then run once per statement, not once per query
(they cost more than the agent's whole span bookkeeping, measured with bench/agent_overhead).
"""

from __future__ import annotations

import re

_MAX_SQL_CHARS = 10_000
# Literals in the SQL of every dialect the agent instruments (SQLite, PostgreSQL, MySQL through
# SQLAlchemy). Strings are read the standard way here ('' doubles a quote, a backslash is an
# ordinary character; see _ESCAPED_RE for backslash escapes); a prefix (E'..', N'..', X'1F',
# B'0101', U&'..') stays as a harmless letter before the ``?``. An unterminated literal (a
# statement cut at _MAX_SQL_CHARS, a quote inside a comment) runs to the end, so nothing after an
# opening quote ever survives.
#
# Every branch starts by consuming its first character from one set and checks what came before
# with a lookbehind: a pattern that starts with a character set lets the regex engine skip to the
# candidates, which made stripping ~2x faster than branches that start with a lookbehind
# (bench/sql_strip).
_LITERAL_RE = re.compile(
    r"""
    [$'0-9.+\-]
    (?:
        (?<=')(?:[^']|'')*(?P<close>'|\Z)                                   # 'text', 'it''s'
      | (?<=\d)(?<![\w$.]\d)\d*(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w$])         # 42, 1.5, 1e-5
      | (?<=\$)(?<![\w$]\$)(?P<tag>[A-Za-z_]\w*|)\$.*?(?:\$(?P=tag)\$|\Z)   # $$...$$, $tag$...$tag$
      | (?<=0)(?<![\w$.]0)(?:[xX][0-9A-Fa-f]+|[bB][01]+)(?![\w$])           # 0x1F, 0b0101
      | (?<=[-+])(?<![\w$.][-+])(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w$])  # -1, +2.5
      | (?<=\.)(?<![\w$.]\.)\d+(?:[eE][-+]?\d+)?(?![\w$])                   # .5
    )
    """,
    re.VERBOSE | re.DOTALL,
)
# MySQL's "text" where a value goes (after = < > or LIKE); elsewhere "..." is a quoted identifier.
_DOUBLE_QUOTED_RE = re.compile(r"""(?P<op>[=<>Ee](?<![^kK][Ee])[ \t]*)"(?:[^"]|"")*(?:"|\Z)""")
# The same strings read with backslash escapes (MySQL, PostgreSQL's E'...'): 'it\'s'.
_ESCAPED_RE = re.compile(r"""'(?:[^'\\]|\\.|'')*(?P<close>'|\Z)""", re.DOTALL)
_ESCAPED_DOUBLE_QUOTED_RE = re.compile(r"""(?P<op>[=<>Ee](?<![^kK][Ee])[ \t]*)"(?:[^"\\]|\\.|"")*(?:"|\Z)""", re.DOTALL)
_COMMENT_RE = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_IDENT = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$]+)(?:\.(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[\w$]+))*'
_FROM_RE = re.compile(rf"\bFROM\s+({_IDENT})", re.IGNORECASE)
_INTO_RE = re.compile(rf"\bINTO\s+({_IDENT})", re.IGNORECASE)
_UPDATE_RE = re.compile(rf"^\s*UPDATE\s+(?:ONLY\s+)?({_IDENT})", re.IGNORECASE)


def _unquote(identifier: str) -> str:
    return re.sub(r'["`\[\]]', "", identifier)


def sql_signature(sql: str) -> str:
    return _signature(sql_strip(sql))


def _signature(stripped: str) -> str:
    # Read from the stripped text: a FROM inside a literal ('x from secrets') must not name it.
    text = _COMMENT_RE.sub(" ", stripped).strip()
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


def _standard_strip(sql: str) -> str:
    sql = _LITERAL_RE.sub("?", sql)
    return _DOUBLE_QUOTED_RE.sub(r"\g<op>?", sql) if '"' in sql else sql


def _left_open(pattern: re.Pattern, sql: str) -> bool:
    """A string that this reading opens runs to the end without its closing quote."""
    return any(m.group("close") == "" for m in pattern.finditer(sql))


def sql_strip(sql: str) -> str:
    """The statement with literal values replaced by ``?`` and cut at 10,000 characters."""
    sql = sql[:_MAX_SQL_CHARS]
    if "\\" not in sql:
        return _standard_strip(sql)
    # A backslash: whether it escapes a quote depends on the dialect and its settings, which we
    # do not know. The reading under which every string is closed is the right one ('C:\' is
    # standard, 'it\'s' is MySQL's); when that does not tell, every character inside a literal
    # under either reading is replaced, so neither lets the text after it through.
    standard_open = _left_open(_LITERAL_RE, sql)
    escaped_open = _left_open(_ESCAPED_RE, sql)
    if standard_open != escaped_open:
        if standard_open:
            return _standard_strip(_ESCAPED_DOUBLE_QUOTED_RE.sub(r"\g<op>?", _ESCAPED_RE.sub("?", sql)))
        return _standard_strip(sql)
    spans = []
    for pattern in (_LITERAL_RE, _ESCAPED_RE, _DOUBLE_QUOTED_RE, _ESCAPED_DOUBLE_QUOTED_RE):
        for match in pattern.finditer(sql):
            op = match.groupdict().get("op")
            spans.append((match.start() + len(op or ""), match.end()))
    spans.sort()
    out, position, start, end = [], 0, -1, -1
    for span_start, span_end in spans:
        if span_start < end:
            end = max(end, span_end)
            continue
        if end > start:
            out += [sql[position:start], "?"]
            position = end
        start, end = span_start, span_end
    if end > start:
        out += [sql[position:start], "?"]
        position = end
    out.append(sql[position:])
    return "".join(out)


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
        stripped = sql_strip(sql)
        described = _DESCRIBED[sql] = (_signature(stripped), {"sql": stripped})
    return described
