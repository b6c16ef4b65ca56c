"""Property-based fuzzing of the intake: every wire-format parser (errors, transactions, releases)
either returns a validated object the queue can carry or raises the protocol's ``ProtocolError``,
whatever bytes, JSON shapes, mutated real agent bodies or compression it is given; and every
intake endpoint answers them without a single 500.

Not skippable: hypothesis is a test dependency. Example counts are moderate (the profile below)
so the file runs in well under a minute; a failure prints the smallest body that caused it.
"""

from __future__ import annotations

import gzip
import json
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from intake.protocols.opbeat import ProtocolError, error_parse
from intake.protocols.releases import release_parse
from intake.protocols.transactions import transactions_parse
from tests.intake.conftest import broker, intake_app, intake_state_clean  # noqa: F401 - fixtures

settings.register_profile(
    "security-fuzz",
    max_examples=60,
    deadline=None,
    # No example database in the work tree; a failure prints its example to reproduce it.
    database=None,
    print_blob=True,
    # The Django client and database fixtures are shared by the examples of one test on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("security-fuzz")
# The pure parsers take well under a millisecond a body: they get more examples.
FUZZ_PURE = settings(FUZZ, max_examples=250)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "opbeat"
ERROR_BODIES = [json.loads(path.read_text()) for path in sorted(FIXTURES.glob("*_POST_errors.json"))]
TRANSACTION_BODIES = [json.loads(path.read_text()) for path in sorted(FIXTURES.glob("*_POST_transactions.json"))]
AGENT_TRANSACTIONS = {
    "histograms": [
        {
            "transaction": "GET /orders/", "result": 200, "kind": "request", "timestamp": "2026-11-26T00:40:00Z",
            "count": 2, "sum": 30.0, "min": 10.0, "max": 20.0,
            "sketch": {"relative_accuracy": 0.01, "min_value": 0.001, "zero_count": 0, "bins": [[116, 1], [151, 1]]},
            "span_ms": {"base": 30.0, "kinds": {"db": 12.0, "app": 18.0}},
        }
    ],
    "traces": [
        {
            "id": "t1", "transaction": "GET /orders/", "timestamp": "2026-11-26T00:40:01Z", "duration": 20.0, "result": 200,
            "spans": [{"id": 1, "parent": 0, "signature": "SELECT", "kind": "db", "start": 1.0, "duration": 5.0,
                       "extra": {"sql": "SELECT 1"}, "stack": [{"module": "m", "function": "f", "lineno": 3}]}],
        }
    ],
    "machine": {"hostname": "web-1"}, "release": "v1", "environment": "prod", "dropped": {"transactions": 0},
}  # fmt: skip
RELEASE_BODIES = [
    {"rev": "a" * 40, "branch": "main", "status": "completed"},
    {
        "version": "v2", "environment": "production", "deployed_at": "2026-01-02T03:04:05+00:00",
        "commits": [{"sha": "b" * 40, "author_name": "Bea", "author_email": "b@example.com", "message": "m",
                     "timestamp": "2026-01-02T01:00:00+00:00",
                     "files": [{"path": "a.py", "status": "modified", "hunks": [[1, 0, 2, 3]]}]}],
    },
]  # fmt: skip
LIMITS = {"max_bytes": 256 * 1024}
ERROR_LIMITS = {**LIMITS, "max_json_depth": 32, "max_frames": 250}

# --- Strategies ------------------------------------------------------------------------------

# ISO times anywhere in datetime's range with any offset: near year 1 or 9999 the offset alone
# overflows a conversion to UTC.
iso_times = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(),
    st.integers(min_value=-1439, max_value=1439),
) | st.datetimes().map(datetime.isoformat)
TIME_FIELDS = {"timestamp", "deployed_at", "start_time"}
scalars = (
    iso_times
    | st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+23:59", "2026-11-26T00:40:00Z", "", "\x00"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)


def _paths(value, prefix=()):
    """Every path to a value inside a JSON document (keys and list indexes)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(document, path, new):
    if not path:
        return new
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


@st.composite
def mutated(draw, bodies: list):
    """A real body with a few values anywhere in it replaced by arbitrary JSON (or removed)."""
    document = draw(st.sampled_from(bodies))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [path for path in _paths(document) if path]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            # Drop the key or element instead of replacing it.
            copy = json.loads(json.dumps(document))
            target = copy
            for step in path[:-1]:
                target = target[step]
            del target[path[-1]]
            document = copy
        else:
            # Times where times go, half of the time: that is where the bounds are.
            is_time = isinstance(path[-1], str) and path[-1] in TIME_FIELDS and draw(st.booleans())
            document = _replace(document, path, draw(iso_times if is_time else json_values))
    return document


def _encodings(raw: bytes):
    return st.sampled_from(
        [
            (raw, ""),
            (raw, ""),
            (raw, ""),
            (zlib.compress(raw), ""),
            (gzip.compress(raw), ""),
            (gzip.compress(raw), "gzip"),
            (zlib.compress(raw), "deflate"),
            (zlib.compress(raw)[:-3], ""),
            (raw, "br"),
        ]
    )


@st.composite
def bodies(draw, documents: list):
    """Bytes as an agent might send them: a mutated real body, an arbitrary JSON document, or
    arbitrary bytes; compressed in any of the ways the intake detects, or broken."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "json", "bytes", "flipped"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300)), draw(st.sampled_from(["", "gzip", "deflate", "identity"]))
    if kind == "json":
        raw = json.dumps(draw(json_values)).encode()
    else:
        raw = json.dumps(draw(mutated(documents))).encode()
    if kind == "flipped":
        data = bytearray(raw)
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            position = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[position] = draw(st.integers(min_value=0, max_value=255))
        raw = bytes(data)
    return draw(_encodings(raw))


# --- The pure parsers ------------------------------------------------------------------------


def _validated_or_refused(parse, **kwargs) -> dict | None:
    """The property: a dict the queue's encoder takes, or ProtocolError with an HTTP status."""
    try:
        out = parse(**kwargs)
    except ProtocolError as exc:
        assert exc.status in (400, 413, 415), exc.status
        assert exc.message
        return None
    assert isinstance(out, dict)
    orjson.dumps(out)
    return out


NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = NOW + timedelta(days=1)


def _in_bounds(moment: datetime | float) -> bool:
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return EARLIEST <= moment <= LATEST


@FUZZ_PURE
@given(body=bodies(ERROR_BODIES))
def test_error_parser_validates_or_refuses(body):
    raw, encoding = body
    event = _validated_or_refused(error_parse, body=raw, content_encoding=encoding, now=NOW, **ERROR_LIMITS)
    if event is not None:
        assert event.get("message") or event.get("param_message") or event.get("exception")
        if event.get("timestamp") is not None:
            assert _in_bounds(datetime.fromisoformat(event["timestamp"])), event["timestamp"]


@FUZZ_PURE
@given(body=bodies(TRANSACTION_BODIES + [AGENT_TRANSACTIONS]))
def test_transactions_parser_validates_or_refuses(body):
    raw, encoding = body
    out = _validated_or_refused(transactions_parse, body=raw, content_encoding=encoding, now=NOW, **LIMITS)
    if out is not None:
        for group in out["groups"]:
            assert group["count"] >= 0 and 0 <= group["min"] <= group["max"]
            assert _in_bounds(group["minute"] + 59)
        for trace in out["traces"]:
            assert _in_bounds(trace["timestamp"])


@FUZZ_PURE
@given(
    body=bodies(RELEASE_BODIES),
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", ""]),
)
def test_release_parser_validates_or_refuses(body, content_type):
    raw, encoding = body
    out = _validated_or_refused(
        release_parse, body=raw, content_type=content_type, content_encoding=encoding, now=NOW, **LIMITS
    )
    if out is not None:
        assert out["version"]
        assert _in_bounds(datetime.fromisoformat(out["deployed_at"]))
        for commit in out["commits"]:
            if commit["timestamp"]:
                assert datetime.fromisoformat(commit["timestamp"]) <= LATEST


@FUZZ_PURE
@given(form=st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=8))
def test_release_parser_takes_any_form(form):
    from urllib.parse import urlencode

    raw = urlencode(form).encode()
    _validated_or_refused(release_parse, body=raw, content_type="application/x-www-form-urlencoded", now=NOW, **LIMITS)


@FUZZ_PURE
@given(
    moment=st.datetimes(timezones=st.none() | st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m))))
)
def test_the_time_rule_converts_or_refuses_any_time(moment):
    from intake.protocols.moments import moment_check

    try:
        utc = moment_check(moment, field="when", now=NOW)
    except ProtocolError as exc:
        assert exc.status == 400 and "`when`" in exc.message
        return
    assert utc.tzinfo == timezone.utc and _in_bounds(utc)


# --- Through the endpoints -------------------------------------------------------------------


def _endpoint(intake_app, what: str) -> str:
    return f"/api/v1/organizations/{intake_app.organization.public_id}/apps/{intake_app.app.public_id}/{what}/"


ENDPOINTS = {
    "errors": ERROR_BODIES,
    "transactions": TRANSACTION_BODIES + [AGENT_TRANSACTIONS],
    "releases": RELEASE_BODIES,
}


@FUZZ
@given(
    what=st.sampled_from(sorted(ENDPOINTS)),
    data=st.data(),
    content_type=st.sampled_from(
        [
            "application/octet-stream",
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain; charset=\x7f",
        ]
    ),
)
def test_intake_endpoints_never_answer_500(intake_app, client, broker, what, data, content_type):
    raw, encoding = data.draw(bodies(ENDPOINTS[what]))
    headers = {"HTTP_AUTHORIZATION": f"Bearer {intake_app.token}"}
    if encoding:
        headers["HTTP_CONTENT_ENCODING"] = encoding
    response = client.generic("POST", _endpoint(intake_app, what), raw, content_type=content_type, **headers)
    assert response.status_code in (202, 400, 413, 415), (response.status_code, response.content)
    assert "error" in json.loads(response.content) or response.status_code == 202


@FUZZ
@given(
    query=st.fixed_dictionaries(
        {}, optional={"environment": st.text(max_size=20) | st.text(max_size=8).map(lambda text: f"{text}\x00")}
    ).flatmap(
        lambda known: st.dictionaries(st.text(max_size=15), st.text(max_size=40), max_size=3).map(
            lambda extra: {**extra, **known}
        )
    ),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]),
    path=st.sampled_from(["errors", "transactions", "releases", "releases/latest"]),
    authorization=st.sampled_from(["", "Bearer ", "Bearer \x00", "Basic x", "token"]) | st.text(max_size=30),
)
def test_intake_endpoints_never_answer_500_to_any_request_shape(
    intake_app, client, broker, query, method, path, authorization
):
    """Wrong methods, tokens and query strings; and the latest-release GET with any parameters."""
    from urllib.parse import urlencode

    good = {"HTTP_AUTHORIZATION": f"Bearer {intake_app.token}"}
    odd = {"HTTP_AUTHORIZATION": authorization.replace("\n", " ").replace("\r", " ")}
    url = _endpoint(intake_app, path) + "?" + urlencode(query)
    for headers in (good, odd):
        response = client.generic(method, url, b"", **headers)
        assert response.status_code < 500, (method, url, response.status_code, response.content)


def test_the_intake_still_takes_a_real_body_after_the_fuzzing(intake_app, client, broker):
    body = (FIXTURES / "opbeat361_py36_clientapi_00_POST_errors.zlib").read_bytes()
    response = client.generic(
        "POST", _endpoint(intake_app, "errors"), body, content_type="application/octet-stream",
        HTTP_AUTHORIZATION=f"Bearer {intake_app.token}",
    )  # fmt: skip
    assert response.status_code == 202
