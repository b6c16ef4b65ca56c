"""Turns a stored event dict (``Event.data``, as the agent sent it) into plain, typed pieces the
issue page renders: the exception and its chained causes, frames with numbered context lines,
the request, the user, tags and the rest.

Everything in ``Event.data`` came from a client: this module only reshapes it and never marks
anything safe; the templates escape every value. Wrong types (a string where a dict belongs)
are shown as text instead of raising, because one odd event must not break the issue page.
It never queries the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from processing.grouping import frame_is_in_app

# How much of one value the page shows; the event itself keeps all of it.
VALUE_MAX_CHARS = 4000


def value_text(value: Any) -> str:
    """A client value as text: strings as they are, anything else as indented JSON, capped."""
    if isinstance(value, str):
        text = value
    elif value is None:
        text = "None"
    else:
        try:
            text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > VALUE_MAX_CHARS:
        text = text[:VALUE_MAX_CHARS] + f"… ({len(text) - VALUE_MAX_CHARS} more characters)"
    return text


def pairs_from(value: Any) -> list[tuple[str, str]]:
    """Key/value rows from a dict, or from a list of [key, value] pairs; anything else is one row."""
    if isinstance(value, dict):
        return [(str(key), value_text(item)) for key, item in value.items()]
    if isinstance(value, list) and all(isinstance(item, (list, tuple)) and len(item) == 2 for item in value):
        return [(str(key), value_text(item)) for key, item in value]
    if value in (None, "", [], {}):
        return []
    return [("", value_text(value))]


def _as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    # ASCII digits only ("²" is a digit to isdigit, not to int), and few enough for int() to
    # take (it refuses strings over 4300 digits).
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 30:
        return int(value)
    return None


@dataclass
class ContextLine:
    number: int | None
    text: str
    is_current: bool


@dataclass
class Frame:
    filename: str
    function: str
    module: str
    lineno: int | None
    in_app: bool
    lines: list[ContextLine]
    vars: list[tuple[str, str]]
    expanded: bool = False


@dataclass
class ExceptionInfo:
    type: str
    value: str
    module: str
    frames: list[Frame] = field(default_factory=list)
    # For a chained cause: "cause" (raise ... from it) or "context" (raised while handling it).
    reason: str = ""


def frame_in_app(frame: dict) -> bool:
    """The same rule the worker groups by (the agent's ``in_app`` or ``library_frame``, else the
    path), so the frames the page expands are the ones the grouping reason names."""
    return frame_is_in_app(frame)


def frame_build(raw: Any) -> Frame:
    frame = _as_dict(raw)
    lineno = _as_int(frame.get("lineno"))
    pre = [value_text(line) for line in _as_list(frame.get("pre_context"))]
    post = [value_text(line) for line in _as_list(frame.get("post_context"))]
    lines: list[ContextLine] = []
    first = lineno - len(pre) if lineno is not None else None
    for offset, text in enumerate(pre):
        lines.append(ContextLine(number=first + offset if first is not None else None, text=text, is_current=False))
    if frame.get("context_line") is not None:
        lines.append(ContextLine(number=lineno, text=value_text(frame.get("context_line")), is_current=True))
    for offset, text in enumerate(post, start=1):
        lines.append(ContextLine(number=lineno + offset if lineno is not None else None, text=text, is_current=False))
    return Frame(
        filename=value_text(frame.get("filename") or frame.get("abs_path") or "<unknown>"),
        function=value_text(frame.get("function") or "?"),
        module=value_text(frame.get("module") or ""),
        lineno=lineno,
        in_app=frame_in_app(frame),
        lines=lines,
        vars=pairs_from(frame.get("vars")),
    )


def frames_build(stacktrace: Any) -> list[Frame]:
    """Frames oldest first (Python's order: the most recent call last), in-app ones expanded.
    When no frame is in-app, the most recent one is expanded so the page still shows where it failed."""
    frames = [frame_build(raw) for raw in _as_list(_as_dict(stacktrace).get("frames"))]
    for frame in frames:
        frame.expanded = frame.in_app
    if frames and not any(frame.in_app for frame in frames):
        frames[-1].expanded = True
    return frames


def exception_build(raw: Any, stacktrace: Any = None) -> ExceptionInfo:
    exc = _as_dict(raw)
    return ExceptionInfo(
        type=value_text(exc.get("type") or ""),
        value=value_text(exc.get("value") or "") if exc.get("value") is not None else "",
        module=value_text(exc.get("module") or ""),
        frames=frames_build(stacktrace if stacktrace is not None else exc.get("stacktrace")),
        reason=exc.get("reason") if exc.get("reason") in ("cause", "context") else "",
    )


@dataclass
class EventView:
    message: str
    level: str
    logger: str
    culprit: str
    exception: ExceptionInfo | None
    # Causes in the order Python prints them: the root cause first, the last one just before
    # the exception that was raised.
    causes: list[ExceptionInfo]
    frames: list[Frame]
    template: Frame | None
    request: dict[str, Any]
    user: list[tuple[str, str]]
    machine: list[tuple[str, str]]
    tags: list[tuple[str, str]]
    release: str
    environment: str
    extra: list[tuple[str, str]]
    param_message: str

    @property
    def exception_line(self) -> str:
        """``Type: value``, as agents write the message of an exception event (then not repeated)."""
        if self.exception is None:
            return ""
        return f"{self.exception.type}: {self.exception.value}" if self.exception.value else self.exception.type


def request_build(http: Any) -> dict[str, Any]:
    http = _as_dict(http)
    if not http:
        return {}
    cookies = http.get("cookies")
    return {
        "method": value_text(http.get("method") or ""),
        "url": value_text(http.get("url") or ""),
        "query_string": value_text(http.get("query_string") or ""),
        "headers": pairs_from(http.get("headers")),
        # Agents send cookies as a dict or as the raw header string.
        "cookies": pairs_from(cookies) if not isinstance(cookies, str) else [("", cookies)],
        "data": value_text(http.get("data")) if http.get("data") not in (None, "", {}, []) else "",
        "env": pairs_from(http.get("env")),
    }


def event_view_build(data: Any) -> EventView:
    data = _as_dict(data)
    exception = exception_build(data["exception"], data.get("stacktrace")) if isinstance(data.get("exception"), dict) else None
    chain = _as_list(_as_dict(data.get("exception")).get("chain"))
    # exception.chain lists causes from the nearest (__cause__/__context__ of the raised exception)
    # outwards, like sentry-python's; reversed so the page reads like Python's own traceback.
    causes = [exception_build(item) for item in reversed(chain) if isinstance(item, dict)]
    frames = exception.frames if exception else frames_build(data.get("stacktrace"))
    template = None
    if isinstance(data.get("template"), dict):
        template = frame_build(data["template"])
        template.expanded = True
    param_message = _as_dict(data.get("param_message"))
    return EventView(
        message=value_text(data.get("message") or ""),
        level=value_text(data.get("level") or ""),
        logger=value_text(data.get("logger") or ""),
        culprit=value_text(data.get("culprit") or ""),
        exception=exception,
        causes=causes,
        frames=frames,
        template=template,
        request=request_build(data.get("http")),
        user=pairs_from(data.get("user")),
        machine=pairs_from(data.get("machine")),
        tags=pairs_from(data.get("tags")),
        release=value_text(data.get("release") or ""),
        environment=value_text(data.get("environment") or ""),
        extra=pairs_from(data.get("extra")),
        param_message=value_text(param_message.get("message") or ""),
    )
