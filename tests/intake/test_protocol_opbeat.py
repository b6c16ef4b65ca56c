"""The Opbeat errors wire format, tested on plain bytes without Django: the captured bodies of the
original agent, and a matrix of bad inputs, each refused with a status and a message naming
what is wrong."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import pytest

from intake.protocols.opbeat import ProtocolError, body_read, error_parse, headers_content_encoding

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "opbeat"
ERROR_FIXTURES = sorted(FIXTURES.glob("*_POST_errors.zlib"))
LIMITS = {"max_bytes": 1024 * 1024, "max_json_depth": 32, "max_frames": 250}


def parse(body: bytes, content_encoding: str = "", **overrides) -> dict:
    return error_parse(body=body, content_encoding=content_encoding, **{**LIMITS, **overrides})


def refused(body: bytes, content_encoding: str = "", **overrides) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(body, content_encoding, **overrides)
    return info.value


def test_module_is_pure():
    code = "import sys, intake.protocols.opbeat; print('django' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


def test_there_are_error_fixtures():
    assert len(ERROR_FIXTURES) >= 5


@pytest.mark.parametrize("path", ERROR_FIXTURES, ids=lambda p: p.stem)
def test_captured_agent_body_parses_to_the_sent_event(path: Path):
    headers = json.loads(path.with_suffix(".headers.json").read_text())["headers"]
    assert "Content-Encoding" not in headers  # the original agent relies on magic-byte detection
    event = parse(path.read_bytes(), headers_content_encoding(headers))
    assert event == json.loads(path.with_suffix(".json").read_text())


def test_gzip_with_header_and_by_magic_and_plain_json():
    event = {"message": "boom", "level": "error"}
    raw = json.dumps(event).encode()
    assert parse(gzip.compress(raw), "gzip") == event
    assert parse(gzip.compress(raw)) == event
    assert parse(raw) == event
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert parse(raw_deflate.compress(raw) + raw_deflate.flush(), "deflate") == event


def test_unknown_fields_are_kept():
    event = {"message": "m", "something_new": {"nested": [1, 2]}, "stacktrace": {"frames": [{"lineno": 1, "x": "y"}]}}
    assert parse(json.dumps(event).encode()) == event


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"", 400, "empty body"),
        (b"{not json", 400, "not valid JSON"),
        (b'{"message": "a"} trailing', 400, "not valid JSON"),
        (b'["message"]', 400, "JSON object"),
        (b'"message"', 400, "JSON object"),
        (b'{"message": "caf\xe9"}', 400, "UTF-8"),
        (b'{"message": "\\ud800"}', 400, "JSON"),
        (b'{"level": "error"}', 400, "at least one of"),
        (b'{"message": 42}', 400, "$.message"),
        (b'{"message": "m", "stacktrace": {"frames": [{"lineno": "12"}]}}', 400, "$.stacktrace.frames[0].lineno"),
        (b'{"message": "m", "stacktrace": {"frames": {}}}', 400, "$.stacktrace.frames"),
        (b'{"exception": {"type": ["ValueError"]}}', 400, "$.exception.type"),
        (b'{"message": "m", "timestamp": "yesterday"}', 400, "$.timestamp"),
        (b'{"message": "m", "user": {"id": [1]}}', 400, "$.user.id"),
        (b'{"message": "m", "tags": {"a": {"b": 1}}}', 400, "$.tags"),
        (b'{"message": "m", "extra": {"n": 123456789012345678901234567890}}', 400, "$.extra.n"),
        (b'{"message": "m", "extra": {"n": 1e999}}', 400, "out of range"),
        (b"x\x9c\x00\x01garbage", 400, "decompressed"),
        (zlib.compress(b'{"message": "m"}')[:-6], 400, "truncated"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_bad_input_is_refused_naming_the_problem(body: bytes, status: int, words: str):
    error = refused(body)
    assert error.status == status
    assert words in error.message


def test_deep_nesting_is_refused_before_and_after_the_parser_limit():
    for depth in (40, 5000):
        body = b'{"message": "m", "extra": {"x": ' + b"[" * depth + b"]" * depth + b"}}"
        error = refused(body)
        assert (error.status, error.reason) == (400, "invalid")
        assert "nested deeper than 32" in error.message
    # Nesting up to the limit is fine.
    assert parse(b'{"message": "m", "extra": {"x": ' + b"[" * 29 + b"]" * 29 + b"}}")["message"] == "m"


def test_an_event_over_the_limit_is_413_plain_and_compressed():
    big = json.dumps({"message": "m", "extra": {"blob": "x" * (2 * 1024 * 1024)}}).encode()
    for body in (big, zlib.compress(big), gzip.compress(big)):
        error = refused(body)
        assert (error.status, error.reason) == (413, "too_large")


def test_gzip_bomb_is_refused_without_inflating_it():
    # 256 MB of JSON in ~250 KB of gzip: refused after inflating about the 1 MB cap.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(b'{"message": "')]
    block = b"a" * (1024 * 1024)
    for _ in range(256):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(b'"}') + compressor.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        error = refused(bomb, "gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (error.status, error.reason) == (413, "too_large")
    # Inflating it would have allocated 256 MB; streaming stops at the 1 MB cap.
    assert peak < 8 * 1024 * 1024


def test_content_encoding_header_lookup_ignores_case():
    assert headers_content_encoding({"content-ENCODING": "gzip"}) == "gzip"
    assert headers_content_encoding({"Content-Type": "application/json"}) == ""


def test_unsupported_content_encoding_is_415():
    error = refused(b'{"message": "m"}', "br")
    assert error.status == 415
    assert "Content-Encoding" in error.message


def test_body_read_caps_the_stream_and_the_declared_length():
    import io

    assert body_read(stream=io.BytesIO(b"abc"), content_length=3, max_bytes=3) == b"abc"
    with pytest.raises(ProtocolError) as info:
        body_read(stream=io.BytesIO(b""), content_length=10_000, max_bytes=100)
    assert info.value.status == 413
    with pytest.raises(ProtocolError) as info:
        body_read(stream=io.BytesIO(b"x" * 1000), content_length=None, max_bytes=100)
    assert info.value.status == 413


def test_frames_are_capped_keeping_both_ends_and_counting_the_rest():
    frames = [{"function": f"f{i}", "lineno": i} for i in range(300)]
    event = parse(json.dumps({"exception": {"type": "E"}, "stacktrace": {"frames": frames}}).encode(), max_frames=10)
    kept = event["stacktrace"]["frames"]
    assert [f["lineno"] for f in kept] == [0, 1, 2, 3, 4, 295, 296, 297, 298, 299]
    assert event["stacktrace"]["frames_omitted"] == 290


def test_long_strings_are_cut_not_refused():
    event = parse(
        json.dumps(
            {
                "message": "m" * 50_000,
                "culprit": "c" * 5000,
                "exception": {"type": "E", "value": "v" * 50_000},
                "stacktrace": {"frames": [{"context_line": "x" * 5000, "pre_context": ["y" * 5000]}]},
            }
        ).encode()
    )
    assert len(event["message"]) == 10_000 and event["message"].endswith("…")
    assert len(event["culprit"]) == 1_000
    assert len(event["exception"]["value"]) == 10_000
    frame = event["stacktrace"]["frames"][0]
    assert len(frame["context_line"]) == 1_000 and len(frame["pre_context"][0]) == 1_000


def test_nul_characters_are_replaced():
    event = parse(b'{"message": "a\\u0000b", "extra": {"k\\u0000": ["\\u0000"]}}')
    assert event == {"message": "a\ufffdb", "extra": {"k\ufffd": ["\ufffd"]}}
