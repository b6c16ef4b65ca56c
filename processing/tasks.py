"""Celery tasks of the worker: thin wrappers that unpack messages and call the services.

``events_digest`` is a batch task (``celery_batches``): the worker buffers up to
``digest_batch_size`` messages of the ``events`` queue (or what arrived within
``digest_flush_seconds``) and digests them together with bulk queries. Messages are acknowledged
only after their batch is committed (``acks_late``); while the database is down the batch waits
and retries (``processing.resilience``), so nothing is acknowledged, and nothing is lost.

Any pool works. Acks are sent by the worker's main process only when a batch returns; a batch that
never returns (a killed pool process, a stop during an outage) leaves its messages unacknowledged,
and the broker redelivers them, which digesting ignores as duplicates. With the solo pool a warm
shutdown also ends a wait for the database (``processing.resilience``). Tasks never hold
business logic.
"""

from __future__ import annotations

import logging

from celery_batches import Batches
from django.conf import settings

from opbeat_server.celery import EVENTS_QUEUE, app

logger = logging.getLogger(__name__)


@app.task(
    base=Batches,
    name="processing.tasks.events_digest",
    queue=EVENTS_QUEUE,
    acks_late=True,
    flush_every=settings.OPBEAT_LIMITS["digest_batch_size"],
    flush_interval=settings.OPBEAT_LIMITS["digest_flush_seconds"],
)
def events_digest(requests) -> dict:
    """Each request's ``args[0]`` is a list of envelopes (``intake/queue.py``)."""
    from .digest import events_digest as digest
    from .resilience import database_patiently

    envelopes: list = []
    for request in requests:
        batch = request.args[0] if request.args else None
        if isinstance(batch, list):
            envelopes.extend(batch)
        else:
            logger.warning("events_digest: message %s carries no list of envelopes; skipped", request.id)
    # Performance data rides the same queue (the intake's group commit shares one confirm per
    # burst); its envelopes are rolled up by processing.rollups, the errors digested below.
    from .rollups import KIND as TRANSACTIONS_KIND, transactions_digest

    performance = [e for e in envelopes if isinstance(e, dict) and e.get("kind") == TRANSACTIONS_KIND]
    if performance:
        envelopes = [e for e in envelopes if not (isinstance(e, dict) and e.get("kind") == TRANSACTIONS_KIND)]
        # An agent's body touches ~6 rollup rows per histogram: 50 bodies per database transaction
        # keep its locks short (measured ~100 bodies/s per worker process, bench/percentiles).
        for start in range(0, len(performance), 50):
            part = performance[start : start + 50]
            rolled = database_patiently(lambda: transactions_digest(envelopes=part), what="transactions_digest")
            logger.info("transactions_digest: %s", rolled)
    # The intake packs the events of concurrent requests into one message, so a batch of messages
    # can hold many more envelopes: they are stored in transactions of at most this many, which
    # bounds statement size and lock time. A crash between two leaves the first committed, and
    # the redelivery skips it as duplicates.
    size = settings.OPBEAT_LIMITS["digest_batch_size"]
    totals = {"stored": 0, "duplicates": 0, "skipped": 0}
    issue_ids: set[int] = set()
    for start in range(0, len(envelopes), size):
        part = envelopes[start : start + size]
        result = database_patiently(lambda: digest(envelopes=part), what="events_digest")
        totals["stored"] += result.stored
        totals["duplicates"] += result.duplicates
        totals["skipped"] += result.skipped
        issue_ids |= result.issue_ids
    logger.info(
        "events_digest: %d messages, %d envelopes: %d stored, %d duplicates, %d skipped",
        len(requests), len(envelopes), totals["stored"], totals["duplicates"], totals["skipped"],
    )  # fmt: skip
    if issue_ids:
        # Assignment and alerts run on the default queue: an SMTP server never slows digesting.
        try:
            issues_followup.delay(sorted(issue_ids))
        except Exception:  # noqa: BLE001 - the events are stored; losing their alerts beats redelivering the batch
            logger.exception("events_digest: could not enqueue the follow-up of %d issue(s)", len(issue_ids))
    return totals


@app.task(name="processing.tasks.rejections_record", acks_late=True)
def rejections_record(rows: list) -> int:
    """``rows``: [{"app_id", "reason", "hour" (epoch seconds), "count"}] from the intake."""
    from .resilience import database_patiently
    from .services import rejections_record as record

    return database_patiently(lambda: record(rows=rows), what="rejections_record")


@app.task(name="processing.tasks.rollups_prune")
def rollups_prune() -> dict:
    from .resilience import database_patiently
    from .rollups import rollups_prune as prune

    return database_patiently(prune, what="rollups_prune")


@app.task(name="processing.tasks.events_prune")
def events_prune() -> dict:
    from .resilience import database_patiently
    from .services import events_prune as prune

    return database_patiently(prune, what="events_prune")


@app.task(name="processing.tasks.release_store", acks_late=True)
def release_store(envelope: dict) -> int | None:
    """One release envelope from the intake (``intake/releases.py``)."""
    from .releases import envelope_release_store
    from .resilience import database_patiently

    release = database_patiently(lambda: envelope_release_store(envelope=envelope), what="release_store")
    return release.pk if release is not None else None


@app.task(name="processing.tasks.issues_followup", acks_late=True)
def issues_followup(issue_ids: list) -> dict:
    """Suspect commit, assignment and alerts for the issues a digest batch touched."""
    from .followup import issues_followup as followup
    from .resilience import database_patiently

    ids = [i for i in issue_ids if isinstance(i, int) and not isinstance(i, bool)]
    sent = database_patiently(lambda: followup(issue_ids=ids), what="issues_followup")
    _alerts_flush_schedule()
    return sent


@app.task(name="processing.tasks.alerts_flush", acks_late=True)
def alerts_flush() -> int:
    """Digest emails whose due time has come; then the flush for the next due time."""
    from .alerts import alerts_flush as flush
    from .resilience import database_patiently

    sent = database_patiently(flush, what="alerts_flush")
    _alerts_flush_schedule()
    return sent


def _alerts_flush_schedule() -> None:
    """Run ``alerts_flush`` at the next digest's due time, so it leaves then and not up to a beat
    period later. Each due time is scheduled once (a key in the shared cache): every follow-up of
    a busy stretch asks, and a person's waiting notices share one due time."""
    from datetime import datetime, timezone

    from django.core.cache import cache

    from .alerts import alerts_due_next

    try:
        due = alerts_due_next()
        if due is None:
            return
        ahead = max((due - datetime.now(tz=timezone.utc)).total_seconds(), 0.0)
        if cache.add(f"alerts-flush-at:{due.timestamp():.6f}", 1, timeout=int(ahead) + 600):
            alerts_flush.apply_async(eta=due)
    except Exception:  # noqa: BLE001 - the alerts are stored; beat's flush every minute still sends the digest
        logger.exception("alerts: could not schedule the next digest flush")
