"""The Opbeat Intake API v1 errors body: bytes and headers in, one validated event dict out.

What the original ``opbeat`` Python agent sends (``tests/fixtures/opbeat/``): JSON compressed with
``zlib.compress`` and *no* Content-Encoding header, so the encoding is detected by magic bytes;
newer clients may send gzip (with or without ``Content-Encoding: gzip``) or plain JSON.

Every size is capped while streaming: the body is read in chunks up to the compressed cap, and
inflated in chunks up to the decompressed cap, so a gzip bomb is refused after inflating at most
the cap plus one chunk. The schema below checks the types of the fields we use (msgspec names
the offending path, e.g. ``$.stacktrace.frames[0].lineno``), but the event that is returned is
the decoded dict itself: unknown fields are kept for the worker to store.

This module is pure: it must never import Django, read settings, touch the database or the
queue. Everything it needs comes in as arguments, so it can be tested on plain bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, BinaryIO

import msgspec
import orjson

from .moments import moment_check
from .refusal import ProtocolError

# Inflate in 64 KiB steps: large enough to be fast, small enough that a bomb costs nothing.
CHUNK_BYTES = 64 * 1024
# Long strings are cut rather than refused: an event with a 50 KB message is still worth keeping.
MAX_MESSAGE_CHARS = 10_000
MAX_SHORT_CHARS = 1_000
MAX_LINE_CHARS = 1_000
TRUNCATED_MARK = "…"

_GZIP_MAGIC = b"\x1f\x8b"


# --- Schema: the fields we read, with their types. Everything is optional. ------------------


class Frame(msgspec.Struct):
    filename: str | None = None
    abs_path: str | None = None
    module: str | None = None
    function: str | None = None
    lineno: int | None = None
    colno: int | None = None
    pre_context: list[str | None] | None = None
    context_line: str | None = None
    post_context: list[str | None] | None = None
    vars: dict[str, Any] | None = None
    in_app: bool | None = None
    library_frame: bool | None = None


class Stacktrace(msgspec.Struct):
    frames: list[Frame] = []


class ExceptionCause(msgspec.Struct):
    type: str | None = None
    value: str | None = None
    module: str | None = None
    stacktrace: Stacktrace | None = None


class ExceptionInfo(msgspec.Struct):
    type: str | None = None
    value: str | None = None
    module: str | None = None
    # Our addition: the causes, outermost first ("During handling ... another exception").
    chain: list[ExceptionCause] | None = None


class ParamMessage(msgspec.Struct):
    message: str
    # logging allows positional args (a list once serialised) or one mapping.
    params: list[Any] | dict[str, Any] | None = None


class Http(msgspec.Struct):
    url: str | None = None
    method: str | None = None
    query_string: str | None = None
    data: Any = None
    cookies: dict[str, Any] | str | None = None
    headers: dict[str, Any] | None = None
    env: dict[str, Any] | None = None


class User(msgspec.Struct):
    # Django sends the integer primary key; other frameworks send strings.
    id: int | str | None = None
    username: str | None = None
    email: str | None = None
    is_authenticated: bool | None = None


class Machine(msgspec.Struct):
    hostname: str | None = None


class ErrorEvent(msgspec.Struct):
    message: str | None = None
    param_message: ParamMessage | None = None
    culprit: str | None = None
    level: str | None = None
    logger: str | None = None
    timestamp: datetime | None = None
    client_supplied_id: str | None = None
    exception: ExceptionInfo | None = None
    stacktrace: Stacktrace | None = None
    http: Http | None = None
    user: User | None = None
    machine: Machine | None = None
    template: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    # Our additions to the v1 protocol.
    release: str | None = None
    environment: str | None = None
    tags: dict[str, str | int | float | bool | None] | None = None
    fingerprint: list[str] | None = None


# --- Reading and inflating -------------------------------------------------------------------


def body_read(*, stream: BinaryIO, content_length: int | None, max_bytes: int) -> bytes:
    """Read the request body in chunks, refusing (413) as soon as it passes ``max_bytes``.

    A declared Content-Length over the cap is refused before reading anything; with one, no more
    than that many bytes are read (a server may not end the stream there). Without one (a chunked
    body), the stream is read to its end."""
    if content_length is not None and content_length > max_bytes:
        raise ProtocolError(413, f"body of {content_length} bytes is over the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    while content_length is None or total < content_length:
        want = CHUNK_BYTES if content_length is None else min(CHUNK_BYTES, content_length - total)
        chunk = stream.read(want)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise ProtocolError(413, f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_zlib(body: bytes) -> bool:
    # RFC 1950 header: compression method 8 (deflate) and a check value making CMF*256+FLG a
    # multiple of 31. No JSON object or array starts like this (only a bare number such as "80"
    # could, and that is refused either way), so an event is never mistaken for compressed data.
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


def _wbits_for(body: bytes, content_encoding: str) -> int | None:
    """The zlib window bits to inflate ``body`` with, or None for a plain body."""
    if content_encoding in ("", "identity"):
        if body[:2] == _GZIP_MAGIC:
            return 16 + zlib.MAX_WBITS
        if _is_zlib(body):
            return zlib.MAX_WBITS
        return None
    if content_encoding in ("gzip", "x-gzip"):
        return 16 + zlib.MAX_WBITS
    if content_encoding == "deflate":
        # HTTP "deflate" is meant to be zlib-wrapped, but some clients send raw deflate.
        return zlib.MAX_WBITS if _is_zlib(body) else -zlib.MAX_WBITS
    raise ProtocolError(415, f"unsupported Content-Encoding {content_encoding!r}; send gzip, deflate or plain JSON")


def body_decompress(*, body: bytes, content_encoding: str, max_bytes: int) -> bytes:
    """Inflate ``body`` if it is gzip or zlib (by header or by magic bytes), streaming in chunks
    and refusing (413) once the output passes ``max_bytes``; a plain body is checked against the
    same cap."""
    wbits = _wbits_for(body, content_encoding.strip().lower())
    if wbits is None:
        if len(body) > max_bytes:
            raise ProtocolError(413, f"event of {len(body)} bytes is over the limit of {max_bytes} bytes")
        return body
    inflater = zlib.decompressobj(wbits)
    chunks: list[bytes] = []
    total = 0
    data = body
    try:
        while True:
            chunk = inflater.decompress(data, CHUNK_BYTES)
            total += len(chunk)
            if total > max_bytes:
                raise ProtocolError(413, f"decompressed event is over the limit of {max_bytes} bytes")
            chunks.append(chunk)
            data = inflater.unconsumed_tail
            # An empty step with no input left means zlib has nothing more to give.
            if inflater.eof or (not data and not chunk):
                break
    except zlib.error as exc:
        raise ProtocolError(400, f"body could not be decompressed: {exc}") from None
    if not inflater.eof:
        raise ProtocolError(400, "compressed body is truncated")
    return b"".join(chunks)


# --- Parsing and validating ------------------------------------------------------------------

def _json_depth_check(*, value: Any, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth``: the worker and the dashboard walk these trees
    recursively. Iterative, and only containers are pushed (measured ~20 µs for a 5 KB event;
    blanking strings with a regex and counting brackets in the bytes cost 30-120 µs)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise ProtocolError(400, f"JSON is nested deeper than {max_depth} levels")
        children = node.values() if type(node) is dict else node
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))


def _strings_clean(value: Any) -> Any:
    # PostgreSQL text and jsonb cannot hold U+0000; only walked when the body contains one.
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_strings_clean(k): _strings_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings_clean(v) for v in value]
    return value


def _ints_check(value: Any, path: str = "$") -> None:
    # The queue's JSON encoder (orjson) takes 64-bit integers only; msgspec decodes any size.
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**64:
            raise ProtocolError(400, f"integer out of the 64-bit range at `{path}`")
    elif isinstance(value, dict):
        for k, v in value.items():
            _ints_check(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _ints_check(v, f"{path}[{i}]")


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + TRUNCATED_MARK
    return value


def _frames_cap(frames: list, max_frames: int) -> int:
    """Keep the oldest and the newest frames (where the call started, and where it failed);
    return how many were dropped from the middle."""
    if len(frames) <= max_frames:
        return 0
    head = max_frames // 2
    tail = max_frames - head
    omitted = len(frames) - max_frames
    frames[head:] = frames[-tail:]
    return omitted


def _frame_lines_cap(frame: dict) -> None:
    if "context_line" in frame:
        frame["context_line"] = _cut(frame["context_line"], MAX_LINE_CHARS)
    for key in ("pre_context", "post_context"):
        lines = frame.get(key)
        if lines:
            frame[key] = [_cut(line, MAX_LINE_CHARS) for line in lines]


def _event_cap(event: dict, *, max_frames: int) -> None:
    if "message" in event:
        event["message"] = _cut(event["message"], MAX_MESSAGE_CHARS)
    for key in ("culprit", "level", "logger", "client_supplied_id", "release", "environment"):
        if key in event:
            event[key] = _cut(event[key], MAX_SHORT_CHARS)
    if isinstance(event.get("param_message"), dict) and "message" in event["param_message"]:
        event["param_message"]["message"] = _cut(event["param_message"]["message"], MAX_MESSAGE_CHARS)
    exception = event.get("exception")
    stacktraces = [event.get("stacktrace")]
    if isinstance(exception, dict):
        for part in [exception, *(exception.get("chain") or [])]:
            for key, limit in (("value", MAX_MESSAGE_CHARS), ("type", MAX_SHORT_CHARS), ("module", MAX_SHORT_CHARS)):
                if key in part:
                    part[key] = _cut(part[key], limit)
            if part is not exception:
                stacktraces.append(part.get("stacktrace"))
    for stacktrace in stacktraces:
        if not stacktrace:
            continue
        frames = stacktrace["frames"] if "frames" in stacktrace else []
        omitted = _frames_cap(frames, max_frames)
        if omitted:
            stacktrace["frames_omitted"] = omitted
        for frame in frames:
            _frame_lines_cap(frame)


def error_parse(
    *,
    body: bytes,
    content_encoding: str = "",
    max_bytes: int,
    max_json_depth: int,
    max_frames: int,
    now: datetime | None = None,
) -> dict:
    """Decompress, parse and validate one errors body; return the event as a dict (unknown
    fields kept, long strings and frame lists capped, ``timestamp`` within
    ``moments.moment_check``'s bounds around ``now``). Raises ``ProtocolError``."""
    if not body:
        raise ProtocolError(400, "empty body; expected a JSON object describing one error")
    raw = body_decompress(body=body, content_encoding=content_encoding, max_bytes=max_bytes)
    try:
        event = msgspec.json.decode(raw)
    except UnicodeDecodeError:
        raise ProtocolError(400, "body is not valid UTF-8") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(400, f"JSON is nested deeper than {max_json_depth} levels") from None
    if not isinstance(event, dict):
        raise ProtocolError(400, f"body must be a JSON object, not {type(event).__name__}")
    # msgspec itself stops at Python's recursion limit (RecursionError above), so parsing
    # before measuring the depth is safe.
    _json_depth_check(value=event, max_depth=max_json_depth)
    try:
        validated = msgspec.convert(event, ErrorEvent)
    except msgspec.ValidationError as exc:
        raise ProtocolError(400, f"invalid event: {exc}") from None
    if validated.timestamp is not None:
        # Kept as sent: within these bounds the worker's conversion to UTC cannot overflow.
        moment_check(validated.timestamp, field="timestamp", now=now or datetime.now(tz=timezone.utc))
    if not (event.get("message") or event.get("param_message") or event.get("exception")):
        raise ProtocolError(400, "an error needs at least one of `message`, `param_message` or `exception`")
    try:
        # The queue encodes with orjson, which takes 64-bit integers only (msgspec decodes any
        # size). Encoding costs ~2 µs for a 5 KB event, a regex for long digit runs cost 40 µs;
        # an event that would poison the publisher is refused here, naming the field.
        orjson.dumps(event)
    except orjson.JSONEncodeError:
        _ints_check(event)
        raise ProtocolError(400, "event cannot be re-encoded as JSON") from None
    if b"\\u0000" in raw:
        event = _strings_clean(event)
    _event_cap(event, max_frames=max_frames)
    return event


def headers_content_encoding(headers: Mapping[str, str]) -> str:
    """The Content-Encoding of a plain header mapping (any capitalisation), or ''."""
    for key, value in headers.items():
        if key.lower() == "content-encoding":
            return value
    return ""
