"""The Opbeat Intake API v1 transactions body, in both dialects: bytes in, one compact, validated
dict out (the ``data`` of a ``"transactions"`` envelope, see ``intake/queue.py``).

The two dialects (``agent/PROTOCOL.md``) are told apart by their keys:

- the original ``opbeat`` module sends ``transactions`` with one duration per request and
  ``traces`` grouped per (transaction, parents, signature, kind) with ``[span_ms, transaction_ms]``
  pairs; a busy process sends up to 10 MB a minute of it;
- ``opbeat-agent`` sends ``histograms`` (count, sum, min, max and a mergeable sketch per
  transaction, result, kind and minute) and a few whole ``traces`` with their spans.

Both come out in one shape, so the worker has one code path and the queue never carries many
raw durations: a group of at most ``EXACT_MAX`` requests carries its durations (``values``), so
the pages show exact percentiles for it; a larger one is counted into the same sketch the agent
sends (``bin = ceil(ln(x) / ln(gamma))``, 1 % relative accuracy), which turns 10 MB of numbers
into a few hundred bins. opbeat-agent sends the durations of a small group beside its bins
(``sketch.values``, ``agent/PROTOCOL.md``). The output::

    {"dialect": "opbeat" | "opbeat-agent", "release": str, "environment": str, "hostname": str,
     "dropped": int,
     "groups": [{"transaction", "result", "kind", "minute": <epoch s>, "count", "errors", "sum",
                 "min", "max", "accuracy", "zero_count", "bins": [[k, n], ...],
                 "values": [ms, ...] (only when ``count <= EXACT_MAX``; then no bins)}],
     "breakdowns": [{"transaction", "minute", "base": ms, "kinds": {span kind: ms}}],
     "traces": [{"id": str | None, "transaction", "result", "kind", "timestamp": <epoch s>,
                 "duration", "spans": [{"id", "parent", "signature", "kind", "start",
                 "duration", "sql", "stack"}], "spans_dropped"}]}

``breakdowns`` say where the time went as *exclusive* time per span kind (a template's time
does not include the SQL run inside it; ``app`` is the transaction's own code), summed over
transactions whose durations sum to ``base``: exact for the original dialect (it lists every
span) and for the agent's histograms that carry ``span_ms`` (opbeat-agent sends it for every
transaction whose spans it kept); measured on the sampled traces for an agent that sends none.

Like ``opbeat.py``, this module is pure: no Django, no settings, no database, no queue. Sizes are
capped by the caller's arguments while streaming (``opbeat.body_read``/``body_decompress``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timezone
from typing import Annotated, Any

import msgspec
import numpy as np

from .moments import moment_check
from .opbeat import ProtocolError, body_decompress

# The server's sketch: bins of 1 % relative width, as the agent's default (agent/opbeat_agent/sketch.py).
RELATIVE_ACCURACY = 0.01
MIN_VALUE = 1e-3
# Groups of up to this many requests carry their durations, not bins: the worker keeps them exactly
# up to the same number per row (processing/sketches.py's EXACT_MAX).
EXACT_MAX = 256
_GAMMA_LOG = math.log((1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY))

NAME_MAX = 300
KIND_MAX = 60
RESULT_MAX = 40
SIGNATURE_MAX = 500
SQL_MAX = 10_000
STACK_FRAMES_MAX = 30
SPANS_MAX = 500
# A body carries one process's last minute (original) or 10 s (agent): these bound what a body
# can make the worker do, far above what a real one holds.
GROUPS_MAX = 5_000
# Span kinds in one histogram's span_ms: agents send a dozen; more is not a breakdown.
KINDS_MAX = 100
TRACES_MAX = 1_000
ORIGINAL_TRACE_GROUPS_MAX = 20_000
# One hour in ms: a longer "transaction" is a clock jump or a bug, and would dominate averages.
DURATION_MAX = 3_600_000.0

Ms = Annotated[float, msgspec.Meta(ge=0)]
Result = int | str | None


class _SketchIn(msgspec.Struct):
    relative_accuracy: Annotated[float, msgspec.Meta(ge=0.0005, le=0.05)] = RELATIVE_ACCURACY
    min_value: Ms = MIN_VALUE
    zero_count: Annotated[int, msgspec.Meta(ge=0)] = 0
    bins: list[tuple[Annotated[int, msgspec.Meta(ge=-100_000, le=100_000)], Annotated[int, msgspec.Meta(ge=0)]]] = []
    # The durations themselves, sent by opbeat-agent for a group of a few requests.
    values: list[Ms] | None = None


class _SpanTimeIn(msgspec.Struct):
    """Exclusive ms per span kind over the group's transactions whose durations sum to ``base``."""

    base: Ms
    kinds: dict[str, Ms] = {}


class _HistogramIn(msgspec.Struct):
    transaction: str
    timestamp: datetime
    count: Annotated[int, msgspec.Meta(ge=0)]
    sum: Ms
    min: Ms
    max: Ms
    sketch: _SketchIn
    result: Result = None
    kind: str | None = None
    span_ms: _SpanTimeIn | None = None


class _SpanIn(msgspec.Struct):
    id: int = 0
    parent: int = 0
    signature: str | None = None
    kind: str | None = None
    start: float = 0.0
    duration: Ms = 0.0
    extra: dict[str, Any] | None = None
    stack: list[dict[str, Any]] | None = None


class _TraceIn(msgspec.Struct):
    transaction: str
    timestamp: datetime
    duration: Ms
    id: str | None = None
    result: Result = None
    kind: str | None = None
    spans: list[_SpanIn] = []
    spans_dropped: Annotated[int, msgspec.Meta(ge=0)] = 0


class _Machine(msgspec.Struct):
    hostname: str | None = None


class _Dropped(msgspec.Struct):
    transactions: Annotated[int, msgspec.Meta(ge=0)] = 0


class _AgentBody(msgspec.Struct):
    histograms: list[_HistogramIn]
    traces: list[_TraceIn] = []
    machine: _Machine | None = None
    release: str | None = None
    environment: str | None = None
    dropped: _Dropped | None = None


class _OriginalTransaction(msgspec.Struct):
    transaction: str
    timestamp: datetime
    durations: list[Ms]
    result: Result = None


class _OriginalTrace(msgspec.Struct):
    transaction: str
    durations: list[tuple[Ms, Ms]]
    signature: str | None = None
    kind: str | None = None
    parents: list[str] = []
    start_time: float | None = None
    extra: dict[str, Any] | None = None


class _OriginalBody(msgspec.Struct):
    transactions: list[_OriginalTransaction]
    traces: list[_OriginalTrace] = []
    machine: _Machine | None = None


# --- Small helpers -----------------------------------------------------------------------------


def _cut(value: Any, limit: int) -> str:
    text = "" if value is None else str(value)
    return text.replace("\x00", "")[:limit]


def _result(value: Result) -> int | str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return value if 0 <= value < 1000 else ""
    return _cut(value, RESULT_MAX)


def result_is_error(result: int | str) -> bool:
    """A 5xx answer, or background work that says it failed."""
    if isinstance(result, int):
        return 500 <= result <= 599
    return result.lower() in ("failure", "error", "failed")


def _minute(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() // 60) * 60


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _decode(raw: bytes, kind: type) -> Any:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ProtocolError(400, f"invalid transactions body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(400, f"body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ProtocolError(400, "body is not valid UTF-8") from None
    except RecursionError:
        raise ProtocolError(400, "JSON is nested too deeply") from None


def _dialect(raw: bytes) -> str:
    """Which dialect a body speaks, by its top-level keys (decoded loosely, values skipped)."""
    try:
        keys = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(400, "body must be a JSON object with `transactions` or `histograms`") from None
    if "histograms" in keys:
        return "opbeat-agent"
    if "transactions" in keys:
        return "opbeat"
    raise ProtocolError(400, "a transactions body needs `transactions` (opbeat) or `histograms` (opbeat-agent)")


# --- The agent's dialect -----------------------------------------------------------------------


def _stack_clean(frames: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    # The original agent's ``extra._frames`` is not typed by the schema: anything but an object is skipped.
    for frame in [frame for frame in frames or [] if isinstance(frame, dict)][:STACK_FRAMES_MAX]:
        lineno = frame.get("lineno")
        out.append(
            {
                "module": _cut(frame.get("module"), 200),
                "function": _cut(frame.get("function"), 200),
                "filename": _cut(frame.get("filename") or frame.get("abs_path"), 300),
                "lineno": lineno if isinstance(lineno, int) and not isinstance(lineno, bool) and 0 <= lineno < 2**31 else None,
            }
        )
    return out


def _sql(extra: dict[str, Any] | None) -> str:
    """What the waterfall prints under a span's signature: the SQL statement, or for an HTTP call
    the URL the agent sent (its query string already removed)."""
    extra = extra or {}
    value = extra.get("sql") if isinstance(extra.get("sql"), str) else extra.get("url")
    return _cut(value, SQL_MAX) if isinstance(value, str) else ""


def _exclusive_by_kind(*, duration: float, spans: list[dict]) -> dict[str, float]:
    """Exclusive time per span kind of one transaction: each span minus its children, and
    ``app`` for the transaction minus its top-level spans (never below zero)."""
    children: dict[int, float] = defaultdict(float)
    for span in spans:
        children[span["parent"]] += span["duration"]
    kinds: dict[str, float] = defaultdict(float)
    for span in spans:
        kinds[span["kind"] or "other"] += max(span["duration"] - children.get(span["id"], 0.0), 0.0)
    kinds["app"] += max(duration - children.get(0, 0.0), 0.0)
    return dict(kinds)


def _agent_normalize(body: _AgentBody) -> dict:
    if len(body.histograms) > GROUPS_MAX:
        raise ProtocolError(413, f"{len(body.histograms)} histograms in one body; the limit is {GROUPS_MAX}")
    if len(body.traces) > TRACES_MAX:
        raise ProtocolError(413, f"{len(body.traces)} traces in one body; the limit is {TRACES_MAX}")
    groups = []
    for index, item in enumerate(body.histograms):
        binned = sum(n for _, n in item.sketch.bins) + item.sketch.zero_count
        if binned != item.count:
            raise ProtocolError(400, f"histograms[{index}]: the sketch holds {binned} values but count is {item.count}")
        if item.count == 0:
            continue
        if item.min > item.max or item.max > DURATION_MAX:
            raise ProtocolError(400, f"histograms[{index}]: min/max out of range")
        values = item.sketch.values
        if values is not None:
            if len(values) != item.count:
                raise ProtocolError(400, f"histograms[{index}]: the sketch lists {len(values)} values but count is {item.count}")
            # A microsecond of slack: values are sent to the µs, min and max perhaps unrounded.
            if values and (min(values) < item.min - 0.001 or max(values) > item.max + 0.001):
                raise ProtocolError(400, f"histograms[{index}]: sketch values outside min..max")
        result = _result(item.result)
        exact = values is not None and len(values) <= EXACT_MAX
        groups.append(
            {
                "transaction": _cut(item.transaction, NAME_MAX) or "<unnamed>",
                "result": result,
                "kind": _cut(item.kind, KIND_MAX) or "request",
                "minute": _minute(item.timestamp),
                "count": item.count,
                "errors": item.count if result_is_error(result) else 0,
                "sum": min(item.sum, item.count * DURATION_MAX),
                "min": item.min,
                "max": item.max,
                "accuracy": item.sketch.relative_accuracy,
                "zero_count": 0 if exact else item.sketch.zero_count,
                "bins": [] if exact else [[k, n] for k, n in item.sketch.bins if n],
            }
        )
        if exact:
            groups[-1]["values"] = values
    # Where the time went: exact from the histograms' span_ms (every transaction whose spans the
    # agent kept); agents that send none get it from their sampled traces below.
    breakdowns = []
    measured = set()
    for item in body.histograms:
        if item.span_ms is None or item.span_ms.base <= 0 or len(item.span_ms.kinds) > KINDS_MAX:
            continue
        name = _cut(item.transaction, NAME_MAX) or "<unnamed>"
        measured.add(name)
        breakdowns.append(
            {
                "transaction": name,
                "minute": _minute(item.timestamp),
                "base": min(item.span_ms.base, item.count * DURATION_MAX),
                "kinds": {
                    (_cut(kind, KIND_MAX) or "other"): min(ms, item.count * DURATION_MAX)
                    for kind, ms in item.span_ms.kinds.items()
                },
            }
        )
    traces = []
    for trace in body.traces:
        duration = min(trace.duration, DURATION_MAX)
        spans = [
            {
                "id": span.id,
                "parent": span.parent,
                "signature": _cut(span.signature, SIGNATURE_MAX),
                "kind": _cut(span.kind, KIND_MAX) or "other",
                "start": round(min(max(span.start, 0.0), DURATION_MAX), 3),
                "duration": round(min(span.duration, DURATION_MAX), 3),
                "sql": _sql(span.extra),
                "stack": _stack_clean(span.stack),
            }
            for span in trace.spans[:SPANS_MAX]
        ]
        name = _cut(trace.transaction, NAME_MAX) or "<unnamed>"
        traces.append(
            {
                "id": _cut(trace.id, 64) or None,
                "transaction": name,
                "result": _result(trace.result),
                "kind": _cut(trace.kind, KIND_MAX) or "request",
                "timestamp": _epoch(trace.timestamp),
                "duration": duration,
                "spans": spans,
                "spans_dropped": trace.spans_dropped + max(len(trace.spans) - SPANS_MAX, 0),
            }
        )
        if name not in measured:
            breakdowns.append(
                {
                    "transaction": name,
                    "minute": _minute(trace.timestamp),
                    "base": duration,
                    "kinds": _exclusive_by_kind(duration=duration, spans=spans),
                }
            )
    return {
        "dialect": "opbeat-agent",
        "release": _cut(body.release, 200),
        "environment": _cut(body.environment, 100),
        "hostname": _cut(body.machine.hostname if body.machine else "", 200),
        "dropped": body.dropped.transactions if body.dropped else 0,
        "groups": groups,
        "breakdowns": breakdowns,
        "traces": traces,
    }


# --- The original dialect ----------------------------------------------------------------------


def _original_groups(transactions: list[_OriginalTransaction]) -> list[dict]:
    merged: dict[tuple, dict] = {}
    for item in transactions:
        if not item.durations:
            continue
        result = _result(item.result)
        key = (_cut(item.transaction, NAME_MAX) or "<unnamed>", result, _minute(item.timestamp))
        group = merged.get(key)
        if group is None:
            group = merged[key] = {
                "transaction": key[0], "result": result, "kind": "request", "minute": key[2],
                "count": 0, "errors": 0, "sum": 0.0, "min": math.inf, "max": 0.0,
                "accuracy": RELATIVE_ACCURACY, "zero_count": 0, "bins": [], "values": [],
            }  # fmt: skip
        durations = [min(value, DURATION_MAX) for value in item.durations]
        group["values"] += durations
        group["count"] += len(durations)
        group["sum"] += sum(durations)
        group["min"] = min(group["min"], min(durations))
        group["max"] = max(group["max"], max(durations))
        if result_is_error(result):
            group["errors"] += len(durations)
    out = []
    for group in merged.values():
        if group["count"] > EXACT_MAX:
            group["bins"], group["zero_count"] = _bins_count(group.pop("values"))
        out.append(group)
    return out


def _bins_count(values: list[float]) -> tuple[list[list[int]], int]:
    """Sorted ``[bin, count]`` pairs and the zero count (durations under ``MIN_VALUE``) of
    durations in ms, ``bin = ceil(ln(x) / ln(gamma))``; in numpy: a busy minute lists tens of
    thousands."""
    durations = np.asarray(values, dtype=np.float64)
    small = durations < MIN_VALUE
    zero = int(small.sum())
    if zero:
        durations = durations[~small]
    if not len(durations):
        return [], zero
    keys, counts = np.unique(np.ceil(np.log(durations) / _GAMMA_LOG).astype(np.int64), return_counts=True)
    return [[k, n] for k, n in zip(keys.tolist(), counts.tolist())], zero


def _original_traces(traces: list[_OriginalTrace], minutes: dict[str, int]) -> tuple[list[dict], list[dict]]:
    """Breakdowns (exact: every span is listed) and, per transaction name, its slowest
    transaction rebuilt as a trace: the original pairs each span with the duration of the
    transaction it ran in, which is how spans are matched to that transaction."""
    by_name: dict[str, list[_OriginalTrace]] = defaultdict(list)
    for trace in traces:
        by_name[_cut(trace.transaction, NAME_MAX) or "<unnamed>"].append(trace)
    breakdowns, samples = [], []
    for name, groups in by_name.items():
        roots = [g for g in groups if not g.parents and (g.signature or "transaction") == "transaction"]
        if not roots:
            continue
        root_ids = {id(root) for root in roots}
        # Time spent in the children of each path (parents + signature), for exclusive times.
        children: dict[tuple, float] = defaultdict(float)
        for group in groups:
            if id(group) not in root_ids:
                children[tuple(group.parents)] += sum(span for span, _ in group.durations)
        kinds: dict[str, float] = defaultdict(float)
        for group in groups:
            is_root = id(group) in root_ids
            path = ("transaction",) if is_root else (*group.parents, group.signature or "")
            own = sum(span for span, _ in group.durations)
            kinds["app" if is_root else (_cut(group.kind, KIND_MAX) or "other")] += max(own - children.get(path, 0.0), 0.0)
        base = sum(span for root in roots for span, _ in root.durations)
        # The roots' start_time is epoch ms; anything else (0, negative, past year 2109) is no time.
        start_ms = next((r.start_time for r in roots if r.start_time and 0 < r.start_time < 2**42), None)
        minute = minutes.get(name) or (int(start_ms / 1000 // 60) * 60 if start_ms else 0)
        if minute:
            breakdowns.append({"transaction": name, "minute": minute, "base": base, "kinds": dict(kinds)})

        slowest = max((tx for root in roots for _, tx in root.durations), default=None)
        if slowest is None or start_ms is None:
            continue
        spans = []
        for group in groups:
            if id(group) in root_ids:
                continue
            for span_ms, tx_ms in group.durations:
                if tx_ms == slowest:
                    spans.append(
                        {
                            "signature": _cut(group.signature, SIGNATURE_MAX),
                            "kind": _cut(group.kind, KIND_MAX) or "other",
                            "start": round(min(max(group.start_time or 0.0, 0.0), DURATION_MAX), 3),
                            "duration": round(min(span_ms, DURATION_MAX), 3),
                            "sql": _sql(group.extra),
                            "stack": _stack_clean((group.extra or {}).get("_frames") if isinstance((group.extra or {}).get("_frames"), list) else None),
                            "path": (*group.parents, group.signature or ""),
                        }
                    )
        spans.sort(key=lambda span: (span["start"], len(span["path"])))
        spans = spans[:SPANS_MAX]
        ids = {}
        for number, span in enumerate(spans, start=1):
            span["id"] = number
            ids.setdefault(span["path"], number)
        for span in spans:
            parent_path = span.pop("path")[:-1]
            span["parent"] = ids.get(parent_path, 0) if len(parent_path) > 1 else 0
        samples.append(
            {
                "id": None,
                "transaction": name,
                "result": "",
                "kind": "request",
                "timestamp": start_ms / 1000.0,
                "duration": min(slowest, DURATION_MAX),
                "spans": spans,
                "spans_dropped": 0,
            }
        )
    return breakdowns, samples


def _original_normalize(body: _OriginalBody) -> dict:
    if len(body.traces) > ORIGINAL_TRACE_GROUPS_MAX:
        raise ProtocolError(413, f"{len(body.traces)} trace groups in one body; the limit is {ORIGINAL_TRACE_GROUPS_MAX}")
    groups = _original_groups(body.transactions)
    if len(groups) > GROUPS_MAX:
        raise ProtocolError(413, f"{len(groups)} transaction groups in one body; the limit is {GROUPS_MAX}")
    minutes: dict[str, int] = {}
    for group in groups:
        minutes.setdefault(group["transaction"], group["minute"])
    breakdowns, traces = _original_traces(body.traces, minutes)
    # The original traces carry no result: take it from the slowest request of the same name.
    results = {}
    for group in groups:
        results.setdefault(group["transaction"], (group["max"], group["result"]))
        if group["max"] > results[group["transaction"]][0]:
            results[group["transaction"]] = (group["max"], group["result"])
    for trace in traces:
        trace["result"] = results.get(trace["transaction"], (0, ""))[1]
    return {
        "dialect": "opbeat",
        "release": "",
        "environment": "",
        "hostname": _cut(body.machine.hostname if body.machine else "", 200),
        "dropped": 0,
        "groups": groups,
        "breakdowns": breakdowns,
        "traces": traces,
    }


def _moments_check(body: _AgentBody | _OriginalBody, now: datetime) -> None:
    """Every timestamp of the body in UTC and within ``moments.moment_check``'s bounds, in place."""
    if isinstance(body, _AgentBody):
        for index, histogram in enumerate(body.histograms):
            histogram.timestamp = moment_check(histogram.timestamp, field=f"histograms[{index}].timestamp", now=now)
        for index, trace in enumerate(body.traces):
            trace.timestamp = moment_check(trace.timestamp, field=f"traces[{index}].timestamp", now=now)
    else:
        for index, item in enumerate(body.transactions):
            item.timestamp = moment_check(item.timestamp, field=f"transactions[{index}].timestamp", now=now)


def transactions_parse(*, body: bytes, content_encoding: str = "", max_bytes: int, now: datetime | None = None) -> dict:
    """Decompress (streaming, capped at ``max_bytes``), validate and normalize one transactions
    body of either dialect; timestamps are bounded around ``now`` (``moments.moment_check``).
    Raises ``ProtocolError`` (400, 413, 415)."""
    now = now or datetime.now(tz=timezone.utc)
    if not body:
        raise ProtocolError(400, "empty body; expected a JSON object with `transactions` or `histograms`")
    raw = body_decompress(body=body, content_encoding=content_encoding, max_bytes=max_bytes)
    if b"\\u0000" in raw:
        # Names and SQL become database text, which cannot hold NUL.
        raw = raw.replace(b"\\u0000", b"")
    if _dialect(raw) == "opbeat-agent":
        agent_body = _decode(raw, _AgentBody)
        _moments_check(agent_body, now)
        return _agent_normalize(agent_body)
    original_body = _decode(raw, _OriginalBody)
    _moments_check(original_body, now)
    return _original_normalize(original_body)
