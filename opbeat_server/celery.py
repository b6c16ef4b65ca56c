"""The Celery app. Queues are durable and messages persistent, so a broker restart loses nothing.

Queue ``events`` carries what the intake accepted (see ``intake/queue.py`` for the message
contract); ``default`` carries everything else (pruning, alerts, rejection counters).
"""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opbeat_server.settings")

app = Celery("opbeat_server")
app.config_from_object("django.conf:settings", namespace="CELERY")

EVENTS_QUEUE = "events"
DEFAULT_QUEUE = "default"

app.conf.task_queues = (
    Queue(EVENTS_QUEUE, Exchange(EVENTS_QUEUE, type="direct", durable=True), routing_key=EVENTS_QUEUE, durable=True),
    Queue(DEFAULT_QUEUE, Exchange(DEFAULT_QUEUE, type="direct", durable=True), routing_key=DEFAULT_QUEUE, durable=True),
)
app.conf.task_default_delivery_mode = "persistent"
app.conf.beat_schedule = {
    "events-prune": {"task": "processing.tasks.events_prune", "schedule": 3600.0},
    "rollups-prune": {"task": "processing.tasks.rollups_prune", "schedule": 3600.0},
    # Digests whose due time has come (processing.alerts). The worker also schedules a flush at
    # each digest's due time, so this is the backstop: a lost schedule costs at most a minute.
    "alerts-flush": {"task": "processing.tasks.alerts_flush", "schedule": 60.0},
}
app.autodiscover_tasks()
