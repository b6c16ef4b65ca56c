"""Stores a batch of accepted events: issues, events, hourly counts and affected users.

The worker hands over the envelopes of many queue messages at once (see ``intake/queue.py`` for
their shape). Each table is written with one bulk statement per batch (per chunk of
``_CHUNK`` rows), whatever the number of events, using ``INSERT .. ON CONFLICT .. RETURNING``,
which SQLite 3.35+ and PostgreSQL both speak:

0. which event ids are already stored (a redelivered message): those are dropped before
   anything else is done with them;
1. each new event is scrubbed with the agent's rules (``opbeat_agent.scrub``) before anything is
   derived from it, whatever client sent it; then which apps exist;
2. upsert one issue per (app, fingerprint), adding the new events to its counts; a resolved
   issue that received a new event after it was resolved is reopened as regressed (one more
   statement, only when the batch touches a resolved issue);
3. insert the events, ``ON CONFLICT (event_id) DO NOTHING``;
4. upsert the hourly counts (per issue, environment and hour) and the issue's distinct users,
   then add the new users to the issue;
5. upsert the per-environment facts the pages read without scanning events: per issue and
   environment (count, first and last seen), per app, environment and minute, and the app's
   environment names.

Idempotent: an event id already stored is neither stored nor counted again, so redelivery after
a crash or a lost ack changes nothing. Envelopes of an unknown version or kind, malformed ones,
and those of a deleted app are logged and skipped; a row the database refuses (a bug, odd data)
costs only its own event. Database outages are not handled here: ``OperationalError`` and
``InterfaceError`` reach the caller, which retries the whole batch (``processing.tasks``).

This module never reads a request, never publishes to the queue, and never trusts an envelope.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any, Iterable

import orjson
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from opbeat_agent.scrub import event_scrub, scrubber_default

from accounts.models import App

from . import grouping
from .models import Environment, ErrorMinute, Event, Issue, IssueEnvironment, IssueFollowup, IssueHourly, IssueUser
from .releases import issues_regress_next_release, issues_regressed_release_record

logger = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
KINDS = {"error"}
# Rows per statement: SQLite allows 32,766 bound parameters; events have 11 columns.
_CHUNK = 1000
# A client clock running ahead is not trusted further than this; the receive time is used instead.
_FUTURE_TOLERANCE = timedelta(minutes=5)
_EARLIEST = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)

# The agent's own rules (opbeat_agent.scrub), applied again here because other clients (the
# original opbeat module, any protocol accepted later) scrub less or nothing.
_SCRUBBER = scrubber_default(json_input=True)

_LEVEL_MAX = 20
_EXCEPTION_TYPE_MAX = 200
_USER_KEY_MAX = 200
_RELEASE_MAX = 200
_ENVIRONMENT_MAX = 100


@dataclass
class DigestResult:
    received: int = 0  # envelopes handed in
    stored: int = 0  # events inserted now
    duplicates: int = 0  # already stored (redelivery, or twice in the batch)
    skipped: int = 0  # refused: malformed, unknown version/kind, deleted app, or refused by the database
    issue_ids: set[int] = field(default_factory=set)  # issues that got new events

    def add(self, other: "DigestResult") -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        self.issue_ids |= other.issue_ids


@dataclass
class _Row:
    event_id: uuid.UUID
    app_id: int
    received_at: datetime
    timestamp: datetime
    data_json: str
    group: grouping.Grouping
    title: str
    culprit: str
    level: str
    exception_type: str
    user_key: str
    release: str
    environment: str


# --- Parsing the untrusted envelope ---------------------------------------------------------------


def _clean(text: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate (valid in a JSON escape, invalid in
    # UTF-8) would make the driver raise: both are replaced, nothing a person reads needs them.
    return _utf8(text.replace("\x00", ""))[:limit]


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    return str(value)


def _json_safe(value: Any) -> Any:
    """A copy PostgreSQL's jsonb accepts: no NUL in strings or keys, no NaN or infinity."""
    if isinstance(value, str):
        return _utf8(value.replace("\x00", ""))
    if isinstance(value, dict):
        return {_utf8(str(key).replace("\x00", "")): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _data_json(data: dict) -> str:
    try:
        encoded = orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError):
        # orjson refuses integers beyond 64 bits, non-string keys and lone surrogates; json takes
        # the first two once _json_safe has replaced the third.
        return json.dumps(_json_safe(data), default=str, ensure_ascii=False)
    if b"\\u0000" in encoded:
        encoded = orjson.dumps(_json_safe(data))
    return encoded.decode()


def _timestamp(value: Any, received_at: datetime) -> datetime:
    """The client's time of the event, trusted only within sane bounds."""
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return received_at
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt_timezone.utc)
        if _EARLIEST <= parsed <= received_at + _FUTURE_TOLERANCE:
            return parsed.astimezone(dt_timezone.utc)
    return received_at


def _user_key(data: dict) -> str:
    """Who was affected: the user's id, email or username, else the client IP address."""
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    for name in ("id", "email", "username"):
        value = _text(user.get(name)).strip()
        if value:
            return _clean(f"{name}:{value}", _USER_KEY_MAX)
    http = data.get("http") if isinstance(data.get("http"), dict) else {}
    env = http.get("env") if isinstance(http.get("env"), dict) else {}
    address = _text(env.get("REMOTE_ADDR")).strip()
    return _clean(f"ip:{address}", _USER_KEY_MAX) if address else ""


@dataclass
class _Head:
    """What an envelope says before its event is scrubbed: enough to tell a redelivery."""

    event_id: uuid.UUID
    app_id: int
    received_at: datetime
    data: dict


def envelope_parse(envelope: Any) -> _Row | None:
    """The row to store for one envelope, or None (logged) when it cannot be stored."""
    head = envelope_head(envelope)
    return None if head is None else head_row(head)


def envelope_head(envelope: Any) -> _Head | None:
    """The envelope's id, app, receive time and event, or None (logged) when it cannot be read."""
    try:
        return _envelope_head(envelope)
    except Exception:  # noqa: BLE001 - one envelope we cannot read must never cost the batch
        event_id = envelope.get("event_id") if isinstance(envelope, dict) else None
        logger.exception("digest: skipped envelope %r that could not be read", event_id)
        return None


def head_row(head: _Head) -> _Row | None:
    """The row to store for the event of ``head``, scrubbed; None (logged) when it cannot be built."""
    try:
        return _head_row(head)
    except Exception:  # noqa: BLE001 - one event we cannot read must never cost the batch
        logger.exception("digest: skipped envelope %r that could not be read", head.event_id.hex)
        return None


def _envelope_head(envelope: Any) -> _Head | None:
    if not isinstance(envelope, dict):
        logger.warning("digest: skipped an envelope that is not an object (%s)", type(envelope).__name__)
        return None
    version, kind = envelope.get("v"), envelope.get("kind")
    if version != ENVELOPE_VERSION or kind not in KINDS:
        logger.warning("digest: skipped envelope %r of unknown version %r or kind %r", envelope.get("event_id"), version, kind)
        return None
    try:
        event_id = uuid.UUID(hex=envelope["event_id"])
        app_id = envelope["app_id"]
        received = envelope["received_at"]
        data = envelope["data"]
        if isinstance(app_id, bool) or not isinstance(app_id, int) or app_id <= 0:
            raise ValueError("app_id is not a positive integer")
        if isinstance(received, bool) or not isinstance(received, (int, float)) or not math.isfinite(received):
            raise ValueError("received_at is not a number")
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        received_at = datetime.fromtimestamp(received, tz=dt_timezone.utc)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as exc:
        logger.warning("digest: skipped malformed envelope %r: %s", envelope.get("event_id"), exc)
        return None
    return _Head(event_id=event_id, app_id=app_id, received_at=received_at, data=data)


def _head_row(head: _Head) -> _Row:
    # Before anything is derived from the event: a title or a grouping key holds its message too.
    data = event_scrub(event=head.data, scrubber=_SCRUBBER)
    received_at = head.received_at
    exception = data.get("exception") if isinstance(data.get("exception"), dict) else {}
    return _Row(
        event_id=head.event_id,
        app_id=head.app_id,
        received_at=received_at,
        timestamp=_timestamp(data.get("timestamp"), received_at),
        data_json=_data_json(data),
        group=grouping.event_group(data),
        title=_clean(grouping.event_title(data), grouping.TITLE_MAX),
        culprit=_clean(grouping.event_culprit(data), grouping.CULPRIT_MAX),
        level=_clean(_text(data.get("level")).strip().lower() or "error", _LEVEL_MAX),
        exception_type=_clean(_text(exception.get("type")).strip(), _EXCEPTION_TYPE_MAX),
        user_key=_user_key(data),
        release=_clean(_text(data.get("release")).strip(), _RELEASE_MAX),
        environment=_clean(_text(data.get("environment")).strip(), _ENVIRONMENT_MAX),
    )


# --- SQL helpers ----------------------------------------------------------------------------------


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _chunks(items: list, size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _values(rows: int, columns: int) -> str:
    one = "(" + ", ".join(["%s"] * columns) + ")"
    return ", ".join([one] * rows)


def _dt(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _uuid(value: uuid.UUID):
    return value if connection.features.has_native_uuid_field else value.hex


def _uuid_from_db(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _least_greatest() -> tuple[str, str]:
    # Scalar min/max: SQLite spells them MIN/MAX with two arguments.
    return ("MIN", "MAX") if connection.vendor == "sqlite" else ("LEAST", "GREATEST")


def _hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


# --- The batch ------------------------------------------------------------------------------------


def _existing_event_ids(event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for chunk in _chunks(event_ids):
        found.update(_uuid_from_db(value) for value in Event.objects.filter(event_id__in=chunk).values_list("event_id", flat=True))
    return found


def _issues_upsert(rows: list[_Row], now: datetime) -> dict[tuple[int, str], int]:
    """One upsert for the issues of ``rows``; returns {(app_id, fingerprint): issue id}.

    Status is left alone here (ignored stays ignored); resolved issues are handed to
    ``_issues_regress``, as RETURNING shows their status.
    """
    groups: dict[tuple[int, str], list[_Row]] = defaultdict(list)
    for row in rows:
        groups[(row.app_id, row.group.fingerprint)].append(row)
    table = _table(Issue)
    least, greatest = _least_greatest()
    resolved, unresolved = Issue.Status.RESOLVED.value, Issue.Status.UNRESOLVED.value
    ids: dict[tuple[int, str], int] = {}
    regress: dict[int, datetime] = {}
    regress_keys: dict[int, tuple[int, str]] = {}
    # Sorted, so two workers upserting overlapping issues lock them in the same order (no deadlock).
    keys = sorted(groups)
    for chunk in _chunks(keys, 500):
        params: list[Any] = []
        for key in chunk:
            members = groups[key]
            first = min(members, key=lambda row: row.timestamp)
            last_seen = max(row.timestamp for row in members)
            params += [
                key[0], key[1], first.group.reason, first.title, first.culprit, first.level, first.exception_type,
                unresolved, False, len(members), 0, _dt(first.timestamp), _dt(last_seen),
            ]  # fmt: skip
        sql = f"""
            INSERT INTO {table} (app_id, fingerprint, grouping_reason, title, culprit, level, exception_type,
                                 status, is_regressed, event_count, users_count, first_seen, last_seen)
            VALUES {_values(len(chunk), 13)}
            ON CONFLICT (app_id, fingerprint) DO UPDATE SET
                event_count = {table}.event_count + excluded.event_count,
                first_seen = {least}({table}.first_seen, excluded.first_seen),
                last_seen = {greatest}({table}.last_seen, excluded.last_seen)
            RETURNING id, app_id, fingerprint, status
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for issue_id, app_id, fingerprint, status in cursor.fetchall():
                ids[(app_id, fingerprint)] = issue_id
                if status == resolved:
                    regress[issue_id] = max(row.received_at for row in groups[(app_id, fingerprint)])
                    regress_keys[issue_id] = (app_id, fingerprint)
    if regress:
        # Issues resolved "in the next release" reopen only for an event of a later release
        # (``processing.releases``); the others by receive time, below.
        by_release = set(
            IssueFollowup.objects.filter(issue_id__in=regress, resolved_in_release__isnull=False).values_list("issue_id", flat=True)
        )
        if by_release:
            issues_regress_next_release(
                events={i: [(row.release, row.environment) for row in groups[regress_keys[i]]] for i in by_release}, now=now
            )
        plain = {issue_id: received for issue_id, received in regress.items() if issue_id not in by_release}
        if plain:
            reopened = _issues_regress(plain, now)
            # The release each happened again in, for its regression alert and the releases pages.
            issues_regressed_release_record(
                releases={i: max(groups[regress_keys[i]], key=lambda row: row.received_at).release for i in reopened}
            )
    return ids


def _issues_regress(received: dict[int, datetime], now: datetime) -> list[int]:
    """Reopen resolved issues that received an event after they were resolved, as regressed.

    Compared on the receive time (our clock), not the client's: an event accepted before the
    issue was resolved and digested after it (a queue backlog) does not reopen it. Returns the
    ids reopened.
    """
    table = _table(Issue)
    items = sorted(received.items())
    params: list[Any] = [Issue.Status.UNRESOLVED.value, True, _dt(now)]
    for issue_id, received_at in items:
        params += [issue_id, _dt(received_at)]
    params.append(Issue.Status.RESOLVED.value)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} SET status = %s, is_regressed = %s, regressed_at = %s
            FROM (VALUES {_values(len(items), 2)}) AS v
            WHERE {table}.id = v.column1 AND {table}.status = %s
              AND ({table}.resolved_at IS NULL OR {table}.resolved_at < v.column2)
            RETURNING {table}.id
            """,
            params,
        )
        return [issue_id for (issue_id,) in cursor.fetchall()]


def _events_insert(rows: list[_Row], issue_ids: dict[tuple[int, str], int]) -> set[uuid.UUID]:
    """Insert the events; returns the ids actually inserted (a concurrent twin is left out)."""
    table = _table(Event)
    inserted: set[uuid.UUID] = set()
    for chunk in _chunks(rows):
        params: list[Any] = []
        for row in chunk:
            params += [
                _uuid(row.event_id), row.app_id, issue_ids[(row.app_id, row.group.fingerprint)],
                _dt(row.timestamp), _dt(row.received_at), row.title, row.culprit, row.user_key,
                row.release, row.environment, row.data_json,
            ]  # fmt: skip
        sql = f"""
            INSERT INTO {table} (event_id, app_id, issue_id, timestamp, received_at, title, culprit, user_key,
                                 release, environment, data)
            VALUES {_values(len(chunk), 11)}
            ON CONFLICT (event_id) DO NOTHING
            RETURNING event_id
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            inserted.update(_uuid_from_db(value) for (value,) in cursor.fetchall())
    return inserted


def _issue_counts_correct(lost: list[_Row], issue_ids: dict[tuple[int, str], int]) -> None:
    """Take back the counts of events another worker stored between our check and our insert."""
    per_issue = Counter(issue_ids[(row.app_id, row.group.fingerprint)] for row in lost)
    for issue_id, count in sorted(per_issue.items()):
        Issue.objects.filter(pk=issue_id).update(event_count=F("event_count") - count)


def _hourly_upsert(rows: list[_Row], issue_ids: dict[tuple[int, str], int]) -> None:
    counts: Counter[tuple[int, str, datetime, int]] = Counter()
    for row in rows:
        counts[(issue_ids[(row.app_id, row.group.fingerprint)], row.environment, _hour(row.timestamp), row.app_id)] += 1
    table = _table(IssueHourly)
    for chunk in _chunks(sorted(counts), 1000):
        params: list[Any] = []
        for key in chunk:
            issue_id, environment, hour, app_id = key
            params += [app_id, issue_id, environment, _dt(hour), counts[key]]
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} (app_id, issue_id, environment, hour, count) VALUES {_values(len(chunk), 5)}
                ON CONFLICT (issue_id, environment, hour) DO UPDATE SET count = {table}.count + excluded.count
                """,
                params,
            )


def _environments_upsert(rows: list[_Row], issue_ids: dict[tuple[int, str], int], now: datetime) -> None:
    """Per issue and environment, per app, environment and minute, and the app's environment names."""
    least, greatest = _least_greatest()
    per_issue: dict[tuple[int, str], list] = {}
    for row in rows:
        key = (issue_ids[(row.app_id, row.group.fingerprint)], row.environment)
        item = per_issue.get(key)
        if item is None:
            per_issue[key] = [row.app_id, 1, row.timestamp, row.timestamp]
        else:
            item[1] += 1
            item[2] = min(item[2], row.timestamp)
            item[3] = max(item[3], row.timestamp)
    table = _table(IssueEnvironment)
    for chunk in _chunks(sorted(per_issue), 1000):
        params: list[Any] = []
        for key in chunk:
            app_id, count, first, last = per_issue[key]
            params += [app_id, key[0], key[1], count, _dt(first), _dt(last)]
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} (app_id, issue_id, environment, count, first_seen, last_seen)
                VALUES {_values(len(chunk), 6)}
                ON CONFLICT (issue_id, environment) DO UPDATE SET
                    count = {table}.count + excluded.count,
                    first_seen = {least}({table}.first_seen, excluded.first_seen),
                    last_seen = {greatest}({table}.last_seen, excluded.last_seen)
                """,
                params,
            )

    minutes: Counter[tuple[int, str, datetime]] = Counter(
        (row.app_id, row.environment, row.timestamp.replace(second=0, microsecond=0)) for row in rows
    )
    table = _table(ErrorMinute)
    for chunk in _chunks(sorted(minutes), 1000):
        params = []
        for key in chunk:
            params += [key[0], key[1], _dt(key[2]), minutes[key]]
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} (app_id, environment, minute, count) VALUES {_values(len(chunk), 4)}
                ON CONFLICT (app_id, environment, minute) DO UPDATE SET count = {table}.count + excluded.count
                """,
                params,
            )

    names = sorted({(row.app_id, row.environment) for row in rows if row.environment})
    if names:
        environments_record(names=names, now=now)


def environments_record(*, names: list[tuple[int, str]], now: datetime) -> None:
    """Store the (app id, environment name) pairs not stored yet; one statement."""
    table = _table(Environment)
    params: list[Any] = []
    for app_id, name in names:
        params += [app_id, name, _dt(now)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (app_id, name, first_seen) VALUES {_values(len(names), 3)} "
            f"ON CONFLICT (app_id, name) DO NOTHING",
            params,
        )


def _users_upsert(rows: list[_Row], issue_ids: dict[tuple[int, str], int]) -> None:
    pairs = sorted({(issue_ids[(row.app_id, row.group.fingerprint)], row.user_key) for row in rows if row.user_key})
    if not pairs:
        return
    new_users: Counter[int] = Counter()
    table = _table(IssueUser)
    for chunk in _chunks(pairs):
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} (issue_id, user_key) VALUES {_values(len(chunk), 2)}
                ON CONFLICT (issue_id, user_key) DO NOTHING
                RETURNING issue_id
                """,
                [value for pair in chunk for value in pair],
            )
            new_users.update(issue_id for (issue_id,) in cursor.fetchall())
    if not new_users:
        return
    issues = _table(Issue)
    increments = sorted(new_users.items())
    for chunk in _chunks(increments):
        # UPDATE .. FROM (VALUES ..): SQLite 3.33+ and PostgreSQL; both name the columns column1, column2.
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                UPDATE {issues} SET users_count = {issues}.users_count + v.column2
                FROM (VALUES {_values(len(chunk), 2)}) AS v
                WHERE {issues}.id = v.column1
                """,
                [value for pair in chunk for value in pair],
            )


@transaction.atomic
def _rows_store(rows: list[_Row], *, now: datetime) -> DigestResult:
    result = DigestResult()
    app_ids = {row.app_id for row in rows}
    live_apps = set(App.objects.filter(pk__in=app_ids).values_list("pk", flat=True))
    for missing in sorted(app_ids - live_apps):
        dropped = sum(1 for row in rows if row.app_id == missing)
        logger.warning("digest: skipped %d event(s) of app %s, which no longer exists", dropped, missing)
    # Already-stored ids were dropped by the caller; one stored since is caught by the insert.
    new = [row for row in rows if row.app_id in live_apps]
    result.skipped = len(rows) - len(new)
    if not new:
        return result

    issue_ids = _issues_upsert(new, now)
    inserted = _events_insert(new, issue_ids)
    if len(inserted) != len(new):
        lost = [row for row in new if row.event_id not in inserted]
        _issue_counts_correct(lost, issue_ids)
        result.duplicates += len(lost)
        new = [row for row in new if row.event_id in inserted]
    _hourly_upsert(new, issue_ids)
    _users_upsert(new, issue_ids)
    _environments_upsert(new, issue_ids, now)
    result.stored = len(new)
    result.issue_ids = {issue_ids[(row.app_id, row.group.fingerprint)] for row in new}
    return result


def events_digest(*, envelopes: list[dict]) -> DigestResult:
    """Store the events of ``envelopes``; see the module docstring for what is skipped and why.

    Raises only ``OperationalError``/``InterfaceError`` (the database is unreachable or busy):
    nothing was committed then, and the caller retries the same envelopes.
    """
    result = DigestResult(received=len(envelopes))
    heads: list[_Head] = []
    seen: set[uuid.UUID] = set()
    for envelope in envelopes:
        head = envelope_head(envelope)
        if head is None:
            result.skipped += 1
        elif head.event_id in seen:
            result.duplicates += 1
        else:
            seen.add(head.event_id)
            heads.append(head)
    if not heads:
        return result
    # Redeliveries are told by their ids before any event is scrubbed: scrubbing is most of the
    # cost of a row, and a redelivered batch (a lost ack, a worker restart) stores nothing.
    existing = _existing_event_ids([head.event_id for head in heads])
    rows: list[_Row] = []
    for head in heads:
        if head.event_id in existing:
            result.duplicates += 1
            continue
        row = head_row(head)
        if row is None:
            result.skipped += 1
        else:
            rows.append(row)
    if not rows:
        return result

    now = datetime.now(tz=dt_timezone.utc)
    try:
        result.add(_rows_store(rows, now=now))
        return result
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:  # noqa: BLE001 - any other refusal is about the data: isolate the bad row
        if len(rows) == 1:
            logger.error("digest: the database refused event %s; skipped: %s", rows[0].event_id, exc)
            result.skipped += 1
            return result
        logger.warning("digest: a batch of %d events was refused (%s); storing them one by one", len(rows), exc)

    # Slow path, only after a refusal: each event alone, so one bad row costs only itself.
    for row in rows:
        try:
            result.add(_rows_store([row], now=now))
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:  # noqa: BLE001 - see above: this event alone is refused, the rest is stored
            logger.error("digest: the database refused event %s; skipped: %s", row.event_id, exc)
            result.skipped += 1
    return result

