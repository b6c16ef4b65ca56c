"""Which issue an event belongs to, and the words the issue page shows for it.

Pure functions over the event dict the intake validated: no Django, no database, no I/O, so the
grouping rules can be tested and changed on their own. Anything read from the event is untrusted:
every field may be missing or of the wrong type, and nothing here may raise on such input.

The grouping key, first rule that applies wins:
1. ``fingerprint`` sent by the client (a string or a list of strings);
2. the exception type plus the module and function of the in-app frames (line numbers left out,
   so an edit above the failing line keeps the group);
3. the message template (``param_message.message``, what a logging call passes);
4. the message with its variable parts (numbers, hex, UUIDs, emails, URLs, IPs) replaced.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

TITLE_MAX = 500
CULPRIT_MAX = 500
# The issue page shows the reason; a fingerprint or message can be long, so it is shortened there.
_REASON_PART_MAX = 200

# Frames from installed packages and the standard library are not the user's code. The path test
# is the last resort, for agents that send neither ``in_app`` nor ``library_frame`` (opbeat 3.x).
_LIBRARY_PATH = re.compile(r"(?:^|[/\\])(?:site-packages|dist-packages)(?:[/\\]|$)|[/\\]lib[/\\]python\d[\d.]*[/\\]")

# Order matters: URLs and emails contain numbers and hex, so they are replaced first.
_VARIABLE_PARTS = [
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+"), "<url>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    # IPv6: eight groups, or a "::" abbreviation (so a time of day like 12:30:45 is left to <num>).
    (
        re.compile(
            r"(?<![\w:])(?:(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}"
            r"|(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?"
            r"|::(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?)(?![\w:])"
        ),
        "<ip>",
    ),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    # A hex run with at least one digit and one letter (ids, hashes); plain words are left alone.
    (re.compile(r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"), "<hex>"),
    (re.compile(r"\d+(?:[.,]\d+)*"), "<num>"),
]


@dataclass(frozen=True)
class Grouping:
    fingerprint: str  # sha1 hex of the key
    reason: str  # in words, for the issue page


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message_normalize(message: str) -> str:
    """The message with its variable parts replaced by placeholders."""
    for pattern, placeholder in _VARIABLE_PARTS:
        message = pattern.sub(placeholder, message)
    return message.strip()


def frames_of(data: dict) -> list[dict]:
    """The stack frames, oldest first; the top-level stacktrace, else the exception's own."""
    for holder in (_dict(data.get("stacktrace")), _dict(_dict(data.get("exception")).get("stacktrace"))):
        frames = holder.get("frames")
        if isinstance(frames, list) and frames:
            return [frame for frame in frames if isinstance(frame, dict)]
    return []


def frame_is_in_app(frame: dict) -> bool:
    if isinstance(frame.get("in_app"), bool):
        return frame["in_app"]
    if isinstance(frame.get("library_frame"), bool):
        return not frame["library_frame"]
    path = _text(frame.get("abs_path")) or _text(frame.get("filename"))
    if not path:
        # Nothing to judge by: assume it is the user's, so the frame still splits groups.
        return True
    return not _LIBRARY_PATH.search(path)


def frame_label(frame: dict) -> str:
    """``module.function`` of a frame (the filename when there is no module)."""
    where = _text(frame.get("module")) or _text(frame.get("filename")) or _text(frame.get("abs_path")) or "?"
    function = _text(frame.get("function")) or "?"
    return f"{where}.{function}"


def _hash(*parts: str) -> str:
    # A kind prefix per rule, and a separator no part can contain, so keys of two rules never collide.
    return hashlib.sha1("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _fingerprint_parts(value: Any) -> list[str] | None:
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list):
        parts = [_text(part) for part in value if _text(part)]
        return parts or None
    return None


def event_group(data: dict) -> Grouping:
    """The grouping key of an event and why; never raises on malformed input."""
    data = _dict(data)

    fingerprint = _fingerprint_parts(data.get("fingerprint"))
    if fingerprint:
        shown = _shorten(", ".join(fingerprint), _REASON_PART_MAX)
        return Grouping(_hash("fingerprint", *fingerprint), f"Grouped by the fingerprint the client sent: {shown}")

    exception = _dict(data.get("exception"))
    exception_type = _text(exception.get("type")).strip()
    if exception_type:
        frames = frames_of(data)
        in_app = [frame_label(frame) for frame in frames if frame_is_in_app(frame)]
        # The reason lists frames newest first, as a reader looks for the failing call first.
        if in_app:
            return Grouping(
                _hash("exception", exception_type, *in_app),
                f"Grouped by exception type {exception_type} and in-app frames "
                f"{_shorten(', '.join(reversed(in_app)), _REASON_PART_MAX)}",
            )
        if frames:
            labels = [frame_label(frame) for frame in frames]
            return Grouping(
                _hash("exception-all-frames", exception_type, *labels),
                f"Grouped by exception type {exception_type} and its frames "
                f"{_shorten(', '.join(reversed(labels)), _REASON_PART_MAX)} (none of them in-app)",
            )
        value = message_normalize(_text(exception.get("value")))
        return Grouping(
            _hash("exception-no-frames", exception_type, value),
            f"Grouped by exception type {exception_type} and its message {_shorten(value, _REASON_PART_MAX)!r} "
            "(no stack trace was sent)",
        )

    template = _text(_dict(data.get("param_message")).get("message")).strip()
    if template:
        return Grouping(_hash("template", template), f"Grouped by the message template {_shorten(template, _REASON_PART_MAX)!r}")

    message = message_normalize(_text(data.get("message")))
    if message:
        return Grouping(
            _hash("message", message),
            f"Grouped by the message with numbers, ids and addresses replaced: {_shorten(message, _REASON_PART_MAX)!r}",
        )
    return Grouping(_hash("empty"), "Grouped with the other events that carry no message and no exception")


def event_title(data: dict) -> str:
    """One line: ``Type: value`` for an exception, else the message's first line."""
    data = _dict(data)
    exception = _dict(data.get("exception"))
    exception_type = _text(exception.get("type")).strip()
    value = _text(exception.get("value")).strip()
    if exception_type:
        title = f"{exception_type}: {value}" if value else exception_type
    else:
        title = (
            _text(data.get("message")).strip()
            or _text(_dict(data.get("param_message")).get("message")).strip()
            or "<no message>"
        )
    first_line = title.splitlines()[0] if title.splitlines() else title
    return _shorten(first_line.strip() or "<no message>", TITLE_MAX)


def event_culprit(data: dict) -> str:
    """Where it happened: the client's ``culprit``, else the newest in-app frame, else the newest frame."""
    data = _dict(data)
    culprit = _text(data.get("culprit")).strip()
    if not culprit:
        frames = frames_of(data)
        in_app = [frame for frame in frames if frame_is_in_app(frame)]
        newest = (in_app or frames)[-1:] if frames else []
        if newest:
            culprit = frame_label(newest[0])
        else:
            culprit = _text(data.get("logger")).strip()
    return _shorten(culprit, CULPRIT_MAX)
