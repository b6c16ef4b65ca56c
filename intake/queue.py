"""The intake's side of the queue: publish accepted events for the worker, durably.

The message contract (the worker's side is ``processing.tasks.events_digest``):
a Celery protocol-2 task message for ``EVENTS_TASK`` on the durable ``events`` queue, persistent,
JSON, whose single positional argument is a list of envelopes::

    {"v": 1, "kind": "error", "event_id": "<32 hex>", "app_id": <App.pk>,
     "received_at": <epoch seconds>, "data": {...the validated event...}}

We build the message by hand on a plain kombu producer instead of calling ``apply_async``:
measured here, Celery's ``apply_async`` cost ~350 µs of CPU per 4 KB message against ~35 µs for
a kombu publish (see ``bench/``), and this is the intake's hot path. With RabbitMQ the connection
has ``confirm_publish`` on, so ``publish`` returns only once the broker has the message: a 202
is a promise that the event is persisted.

This module never touches the database.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from typing import Any, Iterable

import orjson
from django.conf import settings
from kombu import Connection, Exchange, Producer, Queue

EVENTS_TASK = "processing.tasks.events_digest"
REJECTIONS_TASK = "processing.tasks.rejections_record"
EVENTS_QUEUE = "events"
DEFAULT_QUEUE = "default"
ENVELOPE_VERSION = 1

_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
_local = threading.local()


class QueueUnavailable(Exception):
    """The broker could not take the message: the intake answers 503."""


def _producer() -> Producer:
    producer = getattr(_local, "producer", None)
    if producer is None or getattr(_local, "pid", None) != os.getpid():
        connection = Connection(settings.BROKER_URL, transport_options=settings.BROKER_TRANSPORT_OPTIONS)
        # No retry inside kombu: its default sleeps 2 s before a second try, and our caller
        # already retries once; a down broker must give a prompt 503, not a 4 s stall per batch.
        connection.ensure_connection(max_retries=0)
        producer = Producer(connection.channel())
        for name in (EVENTS_QUEUE, DEFAULT_QUEUE):
            # Declared once per connection so a fresh broker has the durable queues before the
            # first publish (a message to an exchange without a bound queue would be dropped).
            exchange = Exchange(name, type="direct", durable=True)
            Queue(name, exchange, routing_key=name, durable=True)(producer.channel).declare()
        _local.producer, _local.connection, _local.pid = producer, connection, os.getpid()
    return producer


def _reset() -> None:
    connection = getattr(_local, "connection", None)
    _local.producer = _local.connection = None
    if connection is not None:
        try:
            connection.release()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone anyway
            pass


def task_message_publish(*, task: str, args: list[Any], queue: str) -> str:
    """Publish one Celery protocol-2 message for ``task`` with ``args``; return its task id.

    Retries once on a fresh connection (the broker may have restarted since the last publish);
    raises ``QueueUnavailable`` if that fails too.
    """
    task_id = uuid.uuid4().hex
    headers = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "",
        "kwargsrepr": "",
        "origin": _ORIGIN,
        "ignore_result": True,
    }
    body = orjson.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    last_error: Exception | None = None
    for _attempt in range(2):
        try:
            _producer().publish(
                body,
                exchange=queue,
                routing_key=queue,
                headers=headers,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                correlation_id=task_id,
                retry=False,
            )
            return task_id
        except Exception as exc:  # noqa: BLE001 - any broker failure means "not persisted": retry, then 503
            last_error = exc
            _reset()
    raise QueueUnavailable(str(last_error)) from last_error


def envelope_new(*, kind: str, app_id: int, received_at: float, data: dict, event_id: str | None = None) -> dict:
    return {
        "v": ENVELOPE_VERSION,
        "kind": kind,
        "event_id": event_id or uuid.uuid4().hex,
        "app_id": app_id,
        "received_at": received_at,
        "data": data,
    }


class _Ticket:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: Exception | None = None


class _GroupPublisher:
    """Group commit for the events queue: requests served at the same time share one message
    and one publisher confirm.

    A confirmed publish waits for the broker's fsync (~1 ms here), so one thread publishing a
    message per request tops out near 900 messages/s while the CPU idles (``bench/publish``).
    Each request thread hands its envelopes to this publisher thread and waits for the confirm
    of the message that carries them: under load many requests ride on one confirm, with no
    added delay when idle (a lone request is published at once). The promise is unchanged: a
    request returns only after the broker confirmed the message holding its event.
    """

    def __init__(self, *, max_requests: int = 256, timeout: float = 10.0) -> None:
        self._max_requests = max_requests
        self._timeout = timeout
        self._cond = threading.Condition()
        self._pending: list[tuple[list[dict], _Ticket]] = []
        self._pid: int | None = None

    def submit(self, envelopes: list[dict]) -> None:
        ticket = _Ticket()
        with self._cond:
            if self._pid != os.getpid():
                # First use in this process, or a fork (gunicorn --preload): the parent's thread
                # did not come along, so start our own.
                self._pending = []
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="opbeat-intake-publisher", daemon=True).start()
            self._pending.append((envelopes, ticket))
            self._cond.notify()
        if not ticket.done.wait(self._timeout):
            raise QueueUnavailable("the broker did not confirm the message in time")
        if ticket.error is not None:
            raise QueueUnavailable(str(ticket.error)) from ticket.error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch = self._pending[: self._max_requests]
                del self._pending[: self._max_requests]
            envelopes = [envelope for group, _ in batch for envelope in group]
            error: Exception | None = None
            try:
                task_message_publish(task=EVENTS_TASK, args=[envelopes], queue=EVENTS_QUEUE)
            except Exception as exc:  # noqa: BLE001 - e.g. an unencodable envelope: if this thread
                # died, every later request would hang until its timeout; fail this batch only.
                error = exc
            for _, ticket in batch:
                ticket.error = error
                ticket.done.set()


_events_publisher = _GroupPublisher()


def events_enqueue(envelopes: Iterable[dict]) -> None:
    """Return once the broker has confirmed a message holding these envelopes; else raise
    ``QueueUnavailable``."""
    _events_publisher.submit(list(envelopes))


def rejections_enqueue(rows: list[dict]) -> str:
    """rows: [{"app_id": int, "reason": str, "hour": epoch seconds, "count": int, "status": int,
    "example": str (the latest refusal's message, at most 300 characters)}, ...]"""
    return task_message_publish(task=REJECTIONS_TASK, args=[rows], queue=DEFAULT_QUEUE)
