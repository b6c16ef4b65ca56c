"""The worker's small services besides digesting: rejection counters and pruning old events.

Called by ``processing.tasks``; they take plain values, never a request or a message.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from accounts.models import App

from .models import ErrorMinute, Event, Issue, IssueHourly, RejectionCount

logger = logging.getLogger(__name__)

REASON_MAX = 40
EXAMPLE_MAX = 300
# Deleting in slices keeps each transaction (and its locks) short on a big first prune.
_DELETE_SLICE = 5000


@transaction.atomic
def rejections_record(*, rows: list[Any]) -> int:
    """Add the intake's rejection counts ([{"app_id", "reason", "hour", "count", "status",
    "example"}]) and keep each row's example, the latest refusal's status and message (a row
    without one, from an intake older than examples, keeps the stored one); returns rows written.

    Malformed rows and rows of apps that no longer exist are logged and skipped.
    """
    totals: Counter[tuple[int, str, datetime]] = Counter()
    examples: dict[tuple[int, str, datetime], tuple[int, str]] = {}
    for row in rows if isinstance(rows, list) else []:
        try:
            app_id, reason, hour, count = row["app_id"], row["reason"], row["hour"], row["count"]
            if isinstance(app_id, bool) or not isinstance(app_id, int) or not isinstance(reason, str):
                raise ValueError("app_id or reason has the wrong type")
            if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
                raise ValueError("count is not a positive integer")
            if isinstance(hour, bool) or not isinstance(hour, (int, float)) or not math.isfinite(hour):
                raise ValueError("hour is not a number")
            when = datetime.fromtimestamp(hour, tz=dt_timezone.utc).replace(minute=0, second=0, microsecond=0)
        except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
            logger.warning("rejections_record: skipped malformed row %r: %s", row, exc)
            continue
        key = (app_id, reason.replace("\x00", "")[:REASON_MAX], when)
        totals[key] += count
        status, example = row.get("status"), row.get("example")
        if isinstance(example, str) and example and isinstance(status, int) and not isinstance(status, bool) and 0 <= status < 1000:
            # Rows come in the order the intake counted them: the last one holds the latest example.
            examples[key] = (status, example.replace("\x00", "")[:EXAMPLE_MAX])
    if not totals:
        return 0
    live_apps = set(App.objects.filter(pk__in={key[0] for key in totals}).values_list("pk", flat=True))
    keys = sorted(key for key in totals if key[0] in live_apps)
    if len(keys) != len(totals):
        logger.warning("rejections_record: skipped counts of %d deleted app(s)", len({k[0] for k in totals} - live_apps))
    if not keys:
        return 0
    table = connection.ops.quote_name(RejectionCount._meta.db_table)
    params: list[Any] = []
    for key in keys:
        app_id, reason, when = key
        status, example = examples.get(key, (0, ""))
        params += [app_id, reason, connection.ops.adapt_datetimefield_value(when), totals[key], status, example]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (app_id, reason, hour, count, status, example) VALUES {values}
            ON CONFLICT (app_id, reason, hour) DO UPDATE SET
                count = {table}.count + excluded.count,
                status = CASE WHEN excluded.example <> '' THEN excluded.status ELSE {table}.status END,
                example = CASE WHEN excluded.example <> '' THEN excluded.example ELSE {table}.example END
            """,
            params,
        )
    return len(keys)


def _ids_delete(ids: list[int]) -> int:
    deleted = 0
    for start in range(0, len(ids), _DELETE_SLICE):
        with transaction.atomic():
            # Nothing references an event, so Django deletes these with one DELETE (no collecting).
            count, _ = Event.objects.filter(pk__in=ids[start : start + _DELETE_SLICE]).delete()
            deleted += count
    return deleted


def events_prune(*, now: datetime | None = None) -> dict[str, int]:
    """Delete events beyond the newest ``events_kept_per_issue`` of each issue, and events (and
    hourly and per-minute counts) older than ``event_retention_days``. Issues and their totals are kept.
    """
    now = now or datetime.now(tz=dt_timezone.utc)
    kept = settings.OPBEAT_LIMITS["events_kept_per_issue"]
    cutoff = now - timedelta(days=settings.OPBEAT_LIMITS["event_retention_days"])

    expired = list(Event.objects.filter(timestamp__lt=cutoff).values_list("pk", flat=True))
    expired_deleted = _ids_delete(expired)

    # Only issues that ever had more events than are kept can have surplus ones: event_count
    # counts every event digested, so this skips the (many) small issues without a scan.
    crowded = Issue.objects.filter(event_count__gt=kept).values("pk")
    surplus = list(
        Event.objects.filter(issue__in=crowded)
        .annotate(rank=Window(RowNumber(), partition_by=[F("issue_id")], order_by=[F("timestamp").desc(), F("pk").desc()]))
        .filter(rank__gt=kept)
        .values_list("pk", flat=True)
    )
    surplus_deleted = _ids_delete(surplus)

    hourly_deleted, _ = IssueHourly.objects.filter(hour__lt=cutoff).delete()
    # The per-minute counts behind the release figures live as long as the hourly ones.
    minutes_deleted, _ = ErrorMinute.objects.filter(minute__lt=cutoff).delete()
    logger.info(
        "events_prune: %d events past retention, %d beyond the newest %d per issue, %d hourly rows",
        expired_deleted, surplus_deleted, kept, hourly_deleted,
    )  # fmt: skip
    return {"expired": expired_deleted, "surplus": surplus_deleted, "hourly": hourly_deleted, "minutes": minutes_deleted}
