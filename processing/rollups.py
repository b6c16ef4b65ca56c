"""Rolls the intake's ``"transactions"`` envelopes up into per-minute, per-hour and per-day rows
per (app, transaction name, environment), plus the app's totals per environment, and keeps the
slowest sampled traces. The figures of all environments are those rows merged when read.

An envelope's ``data`` is what ``intake.protocols.transactions`` produced: groups (count, errors,
sum, min, max and sketch bins, or a small group's durations, per name, result, kind and minute),
breakdowns (exclusive time per span kind) and traces. For a batch of envelopes:

1. the envelope ids are recorded (``TransactionEnvelope``, ``INSERT .. ON CONFLICT DO NOTHING
   RETURNING``): only the ids that were new are rolled up, so a redelivered message adds nothing;
2. names are resolved to ``TransactionName`` rows; past ``transaction_names_per_app`` names an app
   gets no new ones, and their numbers go to ``_other``;
3. the deltas are added in Python per (name, environment, resolution, bucket), then each touched row is
   created if missing and locked (``SELECT .. FOR UPDATE`` in key order, so two workers never
   deadlock), merged and written back with one bulk update; sketches merge by adding bins, or
   by concatenating durations while a row holds at most ``sketches.EXACT_MAX`` of them;
4. the slowest ``TRACES_PER_MINUTE`` traces of each name and minute are inserted, their spans'
   SQL stripped of literals and URLs and signatures scrubbed with the agent's rules
   (``opbeat_agent.scrub``) whatever client sent them; only those are scrubbed, so a redelivered
   envelope or a trace left out costs no scrubbing.

All in one database transaction per batch. Envelopes that are malformed, of another kind, or of
a deleted app are logged and skipped. ``OperationalError`` reaches the caller, which retries the
batch (``processing.resilience``).

This module never reads a request, never publishes to the queue, and never trusts an envelope.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from opbeat_agent.scrub import scrubber_default, span_scrub

from accounts.models import App

from . import sketches
from .digest import environments_record
from .models import TransactionEnvelope, TransactionName, TransactionRollup, TransactionTrace

logger = logging.getLogger(__name__)

KIND = "transactions"
ENVELOPE_VERSION = 1
RESOLUTIONS = (TransactionRollup.Resolution.MINUTE, TransactionRollup.Resolution.HOUR, TransactionRollup.Resolution.DAY)
TRACES_PER_MINUTE = 2
TRACES_PER_HOUR = 3
_FUTURE_TOLERANCE = 300
_EARLIEST = datetime(2000, 1, 1, tzinfo=dt_timezone.utc).timestamp()
_CHUNK = 500
# Spans keep SQL and URLs: the agent's rules strip literals and mask credentials again here, as
# other clients may not have.
_SCRUBBER = scrubber_default(json_input=True)


@dataclass
class RollupResult:
    envelopes: int = 0
    rolled_up: int = 0  # envelopes added now
    duplicates: int = 0
    skipped: int = 0
    transactions: int = 0
    rows: int = 0
    traces: int = 0


@dataclass
class _Delta:
    count: int = 0
    errors: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = 0.0
    bins: dict[int, int] = field(default_factory=dict)
    zero_count: int = 0
    # Durations of the groups that carried them (exact until the row holds EXACT_MAX).
    values: list[float] = field(default_factory=list)
    span_base: float = 0.0
    span_ms: dict[str, float] = field(default_factory=dict)

    def add_group(self, group: dict) -> None:
        self.count += group["count"]
        self.errors += group["errors"]
        self.sum += group["sum"]
        self.min = min(self.min, group["min"])
        self.max = max(self.max, group["max"])
        for key, n in group["bins"].items():
            self.bins[key] = self.bins.get(key, 0) + n
        self.zero_count += group["zero_count"]
        if group["values"]:
            self.values += group["values"]
            if len(self.values) > sketches.EXACT_MAX:
                # The row cannot stay exact any more: bin them now, which bounds a batch's memory.
                bins, zero = sketches.bins_of(self.values)
                for key, n in bins.items():
                    self.bins[key] = self.bins.get(key, 0) + n
                self.zero_count += zero
                self.values = []

    def add_breakdown(self, base: float, kinds: dict[str, float]) -> None:
        self.span_base += base
        for kind, ms in kinds.items():
            self.span_ms[kind] = self.span_ms.get(kind, 0.0) + ms


# --- Reading the untrusted envelope -------------------------------------------------------------


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"not a non-negative number: {value!r}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise ValueError(f"not a count: {value!r}")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("transaction name is not a string")
    return value.replace("\x00", "")[:300] or "<unnamed>"


def _minute(value: Any, received_at: float) -> int:
    """The minute, trusted within sane bounds (a clock far ahead counts as now)."""
    moment = _number(value)
    if not _EARLIEST <= moment <= received_at + _FUTURE_TOLERANCE:
        moment = received_at
    return int(moment // 60) * 60


def _nul_strip(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {str(key).replace("\x00", ""): _nul_strip(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nul_strip(item) for item in value]
    return value


@dataclass
class _Parsed:
    event_id: uuid.UUID
    app_id: int
    received_at: float
    groups: list[dict]
    breakdowns: list[dict]
    traces: list[dict]
    hostname: str
    release: str
    environment: str


def _envelope_parse(envelope: Any) -> _Parsed:
    if not isinstance(envelope, dict) or envelope.get("v") != ENVELOPE_VERSION or envelope.get("kind") != KIND:
        raise ValueError("not a transactions envelope of version 1")
    app_id = envelope["app_id"]
    if isinstance(app_id, bool) or not isinstance(app_id, int) or app_id <= 0:
        raise ValueError("app_id is not a positive integer")
    received_at = _number(envelope["received_at"])
    data = envelope["data"]
    if not isinstance(data, dict):
        raise ValueError("data is not an object")
    groups = []
    for group in data.get("groups") or []:
        count = _count(group["count"])
        if count == 0:
            continue
        bins = group.get("bins") or []
        values = group.get("values")
        if values is not None:
            if not isinstance(values, list) or len(values) != count:
                raise ValueError("group values do not match its count")
            values = [_number(value) for value in values]
            # The durations are the whole distribution: bins sent beside them would count twice.
            bins = []
        groups.append(
            {
                "transaction": _name(group["transaction"]),
                "kind": str(group.get("kind") or "request")[:60],
                "minute": _minute(group["minute"], received_at),
                "count": count,
                "errors": min(_count(group.get("errors", 0)), count),
                "sum": _number(group["sum"]),
                "min": _number(group["min"]),
                "max": _number(group["max"]),
                "zero_count": 0 if values else _count(group.get("zero_count", 0)),
                "bins": sketches.bins_rebin(
                    bins=[[int(k), _count(n)] for k, n in bins], accuracy=_number(group.get("accuracy", 0.01))
                ),
                "values": values or [],
            }
        )
    breakdowns = []
    for item in data.get("breakdowns") or []:
        kinds = {str(kind)[:60]: _number(ms) for kind, ms in (item.get("kinds") or {}).items()}
        breakdowns.append(
            {
                "transaction": _name(item["transaction"]),
                "minute": _minute(item["minute"], received_at),
                "base": _number(item["base"]),
                "kinds": kinds,
            }
        )
    traces = []
    for item in data.get("traces") or []:
        spans = item.get("spans", [])
        if not isinstance(spans, list):
            raise ValueError("trace spans are not a list")
        # Scrubbed in _traces_insert, once this envelope is known new and the trace kept.
        traces.append(
            {
                "id": str(item.get("id") or "")[:64],
                "transaction": _name(item["transaction"]),
                "kind": str(item.get("kind") or "request")[:60],
                "result": str(item.get("result", ""))[:40],
                "timestamp": _minute(item["timestamp"], received_at) + _number(item["timestamp"]) % 60,
                "duration": _number(item["duration"]),
                "spans": spans,
                "scrubbed": False,
                "spans_dropped": min(_count(item.get("spans_dropped", 0)), 2**31 - 1),
            }
        )
    return _Parsed(
        event_id=uuid.UUID(hex=envelope["event_id"]),
        app_id=app_id,
        received_at=received_at,
        groups=groups,
        breakdowns=breakdowns,
        traces=traces,
        hostname=str(data.get("hostname") or "")[:200],
        release=str(data.get("release") or "")[:200],
        environment=str(data.get("environment") or "").replace("\x00", "").strip()[:100],
    )


# --- Writing -------------------------------------------------------------------------------------


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


def _envelopes_claim(parsed: list[_Parsed]) -> set[uuid.UUID]:
    """Record the envelope ids; return those that were not recorded before."""
    table = connection.ops.quote_name(TransactionEnvelope._meta.db_table)
    native = connection.features.has_native_uuid_field
    new: set[uuid.UUID] = set()
    for start in range(0, len(parsed), _CHUNK):
        chunk = parsed[start : start + _CHUNK]
        params: list[Any] = []
        for item in chunk:
            params += [
                item.event_id if native else item.event_id.hex,
                item.app_id,
                connection.ops.adapt_datetimefield_value(_utc(item.received_at)),
            ]
        values = ", ".join(["(%s, %s, %s)"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (event_id, app_id, received_at) VALUES {values} "
                f"ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                params,
            )
            new.update(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)) for (value,) in cursor.fetchall())
    return new


def _names_resolve(app_id: int, wanted: dict[str, str], now: datetime) -> dict[str, int]:
    """{name: TransactionName id} for ``wanted`` ({name: kind}), capped: a name the app does
    not have yet, once it has ``transaction_names_per_app``, maps to ``_other``'s row."""
    cap = settings.OPBEAT_LIMITS["transaction_names_per_app"]
    special = {TransactionName.TOTAL, TransactionName.OTHER}
    ids = dict(TransactionName.objects.filter(app_id=app_id, name__in=[*wanted, *special]).values_list("name", "id"))
    missing = [name for name in wanted if name not in ids]
    # Only the app's totals row always exists; `_other` appears once the cap is reached, and its
    # existence is what the dashboard reports.
    needed = [TransactionName.TOTAL] if TransactionName.TOTAL not in ids else []
    if missing:
        existing = TransactionName.objects.filter(app_id=app_id).exclude(name__in=special).count()
        room = max(cap - existing, 0)
        TransactionName.objects.bulk_create(
            [TransactionName(app_id=app_id, name=name, kind=wanted[name], first_seen=now) for name in sorted(missing)[:room]],
            ignore_conflicts=True,
        )
        if len(missing) > room:
            logger.warning("rollups: app %s reached %d transaction names; %d name(s) counted as _other", app_id, cap, len(missing) - room)
            needed.append(TransactionName.OTHER)
    if needed:
        TransactionName.objects.bulk_create(
            [TransactionName(app_id=app_id, name=name, kind="", first_seen=now) for name in needed], ignore_conflicts=True
        )
    ids = dict(TransactionName.objects.filter(app_id=app_id, name__in=[*wanted, *special]).values_list("name", "id"))
    # A name created by a concurrent batch past the cap is not in ids: it goes to `_other` too.
    if any(name not in ids for name in wanted) and TransactionName.OTHER not in ids:
        TransactionName.objects.bulk_create(
            [TransactionName(app_id=app_id, name=TransactionName.OTHER, kind="", first_seen=now)], ignore_conflicts=True
        )
        ids[TransactionName.OTHER] = TransactionName.objects.get(app_id=app_id, name=TransactionName.OTHER).id
    out = {name: ids[name] if name in ids else ids[TransactionName.OTHER] for name in wanted}
    out[TransactionName.TOTAL] = ids[TransactionName.TOTAL]
    return out


def _rollups_write(deltas: dict[tuple[int, int, str, int, int], _Delta]) -> int:
    """Add ``deltas`` ({(app_id, name_id, environment, resolution, bucket epoch): delta}) to their rows."""
    keys = sorted(deltas)
    TransactionRollup.objects.bulk_create(
        [
            TransactionRollup(
                app_id=app_id, name_id=name_id, environment=environment, resolution=resolution, bucket=_utc(bucket), span_ms={}
            )
            for app_id, name_id, environment, resolution, bucket in keys
        ],
        ignore_conflicts=True,
        batch_size=_CHUNK,
    )
    by_resolution: dict[int, list[tuple]] = defaultdict(list)
    for key in keys:
        by_resolution[key[3]].append(key)
    changed = []
    for resolution, group in by_resolution.items():
        for start in range(0, len(group), _CHUNK):
            chunk = group[start : start + _CHUNK]
            rows = (
                TransactionRollup.objects.select_for_update()
                .filter(
                    name_id__in={key[1] for key in chunk},
                    environment__in={key[2] for key in chunk},
                    resolution=resolution,
                    bucket__in={_utc(key[4]) for key in chunk},
                )
                .order_by("name_id", "environment", "bucket")
            )
            wanted = set(chunk)
            for row in rows:
                key = (row.app_id, row.name_id, row.environment, row.resolution, int(row.bucket.timestamp()))
                if key not in wanted:
                    continue
                delta = deltas[key]
                sketch = sketches.Sketch()
                sketch.add_encoded(row.sketch)
                sketch.add_values(delta.values)
                sketch.add_bins(delta.bins, delta.zero_count)
                row.sketch = sketch.encode()
                row.min_ms = delta.min if row.count == 0 else min(row.min_ms, delta.min)
                row.max_ms = max(row.max_ms, delta.max)
                row.count += delta.count
                row.errors += delta.errors
                row.sum_ms += delta.sum
                row.span_base_ms += delta.span_base
                spans = dict(row.span_ms or {})
                for kind, ms in delta.span_ms.items():
                    spans[kind] = spans.get(kind, 0.0) + ms
                row.span_ms = spans
                changed.append(row)
    _rows_update(changed)
    return len(changed)


# UPDATE .. FROM (VALUES ..): one statement per chunk. Django's bulk_update builds a CASE per
# column and row, which cost ~90 % of a batch's time in the profile (bench/percentiles, worker).
_UPDATE_COLUMNS = (
    ("id", "bigint"), ("sketch", "bytea"), ("min_ms", "double precision"), ("max_ms", "double precision"),
    ("count", "bigint"), ("errors", "bigint"), ("sum_ms", "double precision"),
    ("span_base_ms", "double precision"), ("span_ms", "jsonb"),
)  # fmt: skip


def _rows_update(rows: list[TransactionRollup]) -> None:
    table = connection.ops.quote_name(TransactionRollup._meta.db_table)
    if connection.vendor == "postgresql":
        one = "(" + ", ".join(f"%s::{kind}" for _, kind in _UPDATE_COLUMNS) + ")"
    else:
        one = "(" + ", ".join(["%s"] * len(_UPDATE_COLUMNS)) + ")"
    assignments = ", ".join(
        f"{connection.ops.quote_name(column)} = v.column{index}"
        for index, (column, _) in enumerate(_UPDATE_COLUMNS, start=1)
        if column != "id"
    )
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        params: list[Any] = []
        for row in chunk:
            params += [
                row.id, row.sketch, row.min_ms, row.max_ms, row.count, row.errors, row.sum_ms,
                row.span_base_ms, orjson.dumps(row.span_ms).decode(),
            ]  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([one] * len(chunk))}) AS v "
                f"WHERE {table}.id = v.column1",
                params,
            )


def _spans_scrub(spans: list) -> list:
    """A stored trace's spans with the agent's rules applied, then NUL removed."""
    spans = [span_scrub(span=span, scrubber=_SCRUBBER) if isinstance(span, dict) else _SCRUBBER.value(span) for span in spans]
    if b"\\u0000" in orjson.dumps(spans):
        # PostgreSQL's jsonb cannot hold NUL; the intake strips it, but envelopes are not trusted.
        spans = _nul_strip(spans)
    return spans


def _traces_insert(parsed: list[_Parsed], names: dict[int, dict[str, int]]) -> int:
    # Per (name, minute) only the slowest few of the batch: the agent sends one per group every
    # 10 s from every process, far more than anyone reads.
    best: dict[tuple[int, int], list[tuple[float, TransactionTrace, dict]]] = defaultdict(list)
    for item in parsed:
        for index, trace in enumerate(item.traces):
            name_id = names[item.app_id][trace["transaction"]]
            key = (name_id, int(trace["timestamp"] // 60))
            row = TransactionTrace(
                app_id=item.app_id,
                name_id=name_id,
                trace_id=trace["id"] or f"{item.event_id.hex}-{index}",
                timestamp=_utc(trace["timestamp"]),
                duration_ms=trace["duration"],
                result=trace["result"],
                hostname=item.hostname,
                release=item.release,
                environment=item.environment,
                spans=trace["spans"],
                spans_dropped=trace["spans_dropped"],
            )
            best[key].append((trace["duration"], row, trace))
    rows = []
    for candidates in best.values():
        candidates.sort(key=lambda entry: -entry[0])
        for _, row, trace in candidates[:TRACES_PER_MINUTE]:
            # Once: after a refused batch the same envelopes are stored again one by one.
            if not trace["scrubbed"]:
                trace["spans"], trace["scrubbed"] = _spans_scrub(trace["spans"]), True
            row.spans = trace["spans"]
            rows.append(row)
    TransactionTrace.objects.bulk_create(rows, ignore_conflicts=True, batch_size=_CHUNK)
    return len(rows)


@transaction.atomic
def _parsed_store(parsed: list[_Parsed], result: RollupResult) -> None:
    live = set(App.objects.filter(pk__in={item.app_id for item in parsed}).values_list("pk", flat=True))
    for item in parsed:
        if item.app_id not in live:
            logger.warning("rollups: skipped envelope %s of app %s, which no longer exists", item.event_id, item.app_id)
    kept = [item for item in parsed if item.app_id in live]
    result.skipped += len(parsed) - len(kept)
    if not kept:
        return
    new = _envelopes_claim(kept)
    result.duplicates += len(kept) - len(new)
    kept = [item for item in kept if item.event_id in new]
    if not kept:
        return

    now = datetime.now(tz=dt_timezone.utc)
    wanted: dict[int, dict[str, str]] = defaultdict(dict)
    for item in kept:
        for entry in (*item.groups, *item.breakdowns, *item.traces):
            wanted[item.app_id].setdefault(entry["transaction"], entry.get("kind") or "request")
    names = {app_id: _names_resolve(app_id, wanted[app_id], now) for app_id in sorted(wanted)}

    deltas: dict[tuple[int, int, str, int, int], _Delta] = defaultdict(_Delta)
    for item in kept:
        total = names[item.app_id][TransactionName.TOTAL]
        for group in item.groups:
            name_id = names[item.app_id][group["transaction"]]
            for resolution in RESOLUTIONS:
                bucket = group["minute"] // resolution * resolution
                for target in (name_id, total):
                    deltas[(item.app_id, target, item.environment, int(resolution), bucket)].add_group(group)
            result.transactions += group["count"]
        for breakdown in item.breakdowns:
            name_id = names[item.app_id][breakdown["transaction"]]
            for resolution in RESOLUTIONS:
                bucket = breakdown["minute"] // resolution * resolution
                for target in (name_id, total):
                    deltas[(item.app_id, target, item.environment, int(resolution), bucket)].add_breakdown(
                        breakdown["base"], breakdown["kinds"]
                    )
    result.rows += _rollups_write(deltas)
    result.traces += _traces_insert(kept, names)
    environments = sorted({(item.app_id, item.environment) for item in kept if item.environment})
    if environments:
        environments_record(names=environments, now=now)
    result.rolled_up += len(kept)


def transactions_digest(*, envelopes: list[Any]) -> RollupResult:
    """Roll up the ``"transactions"`` envelopes; see the module docstring. Raises only the
    database's ``OperationalError``/``InterfaceError`` (nothing committed; retry the batch)."""
    result = RollupResult(envelopes=len(envelopes))
    parsed: list[_Parsed] = []
    seen: set[uuid.UUID] = set()
    for envelope in envelopes:
        try:
            item = _envelope_parse(envelope)
        except Exception as exc:  # noqa: BLE001 - one envelope we cannot read must never cost the batch
            event_id = envelope.get("event_id") if isinstance(envelope, dict) else None
            logger.warning("rollups: skipped malformed transactions envelope %r: %s", event_id, exc)
            result.skipped += 1
            continue
        if item.event_id in seen:
            result.duplicates += 1
            continue
        seen.add(item.event_id)
        parsed.append(item)
    if not parsed:
        return result
    batch = RollupResult()
    try:
        _parsed_store(parsed, batch)
        _results_add(result, batch)
        return result
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:  # noqa: BLE001 - a refusal about the data: isolate the bad envelope
        if len(parsed) == 1:
            logger.error("rollups: the database refused envelope %s; skipped: %s", parsed[0].event_id, exc)
            result.skipped += 1
            return result
        logger.warning("rollups: a batch of %d envelopes was refused (%s); rolling them up one by one", len(parsed), exc)
    # Slow path, only after a refusal: each envelope alone (its own transaction), so one bad
    # envelope costs only itself; the result counts only what was committed.
    for item in parsed:
        alone = RollupResult()
        try:
            _parsed_store([item], alone)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:  # noqa: BLE001 - see above
            logger.error("rollups: the database refused envelope %s; skipped: %s", item.event_id, exc)
            result.skipped += 1
            continue
        _results_add(result, alone)
    return result


def _results_add(result: RollupResult, other: RollupResult) -> None:
    for name in ("rolled_up", "duplicates", "skipped", "transactions", "rows", "traces"):
        setattr(result, name, getattr(result, name) + getattr(other, name))


def rollups_prune(*, now: datetime | None = None) -> dict[str, int]:
    """Delete rollup rows past their resolution's retention, traces past theirs or beyond the
    slowest ``TRACES_PER_HOUR`` of a name and hour, and old envelope ids."""
    now = now or datetime.now(tz=dt_timezone.utc)
    limits = settings.OPBEAT_LIMITS
    cutoffs = {
        TransactionRollup.Resolution.MINUTE: now - timedelta(hours=limits["transaction_minute_retention_hours"]),
        TransactionRollup.Resolution.HOUR: now - timedelta(days=limits["transaction_hour_retention_days"]),
        TransactionRollup.Resolution.DAY: now - timedelta(days=limits["transaction_day_retention_days"]),
    }
    deleted: dict[str, int] = {}
    for resolution, cutoff in cutoffs.items():
        count, _ = TransactionRollup.objects.filter(resolution=resolution, bucket__lt=cutoff).delete()
        deleted[resolution.label] = count
    trace_cutoff = now - timedelta(days=limits["transaction_trace_retention_days"])
    deleted["traces_expired"], _ = TransactionTrace.objects.filter(timestamp__lt=trace_cutoff).delete()
    # Traces of hours that are over: keep the slowest few of each name and hour.
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    ranked = (
        TransactionTrace.objects.filter(timestamp__lt=hour_start, timestamp__gte=hour_start - timedelta(days=2))
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("name_id"), F("timestamp__date"), F("timestamp__hour")],
                order_by=[F("duration_ms").desc(), F("pk").asc()],
            )
        )
        .filter(rank__gt=TRACES_PER_HOUR)
        .values_list("pk", flat=True)
    )
    surplus = list(ranked)
    deleted["traces_surplus"] = 0
    for start in range(0, len(surplus), 5000):
        count, _ = TransactionTrace.objects.filter(pk__in=surplus[start : start + 5000]).delete()
        deleted["traces_surplus"] += count
    deleted["envelopes"], _ = TransactionEnvelope.objects.filter(received_at__lt=now - timedelta(days=3)).delete()
    logger.info("rollups_prune: %s", deleted)
    return deleted
