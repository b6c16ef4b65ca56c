"""The ceiling bench/intake compares the intake with: a minimal WSGI app that only reads the
body, inflates it, parses the JSON and publishes it with kombu at the same durability as the
intake (durable queue, persistent message, publisher confirm), then answers 202. No auth, no
rate limit, no validation, no Django.

    BASELINE_BROKER_URL=amqp://... granian --interface wsgi bench.baseline_app:application
"""

from __future__ import annotations

import os
import threading
import zlib

import orjson
from kombu import Connection, Exchange, Producer, Queue

BROKER_URL = os.environ.get("BASELINE_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/bench")
QUEUE = "baseline"
_local = threading.local()


def _producer() -> Producer:
    producer = getattr(_local, "producer", None)
    if producer is None:
        connection = Connection(BROKER_URL, transport_options={"confirm_publish": True})
        channel = connection.channel()
        Queue(QUEUE, Exchange(QUEUE, type="direct", durable=True), routing_key=QUEUE, durable=True)(channel).declare()
        producer = _local.producer = Producer(channel)
    return producer


def application(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    if body[:1] == b"\x78":
        body = zlib.decompress(body)
    data = orjson.loads(body)
    _producer().publish(orjson.dumps(data), exchange=QUEUE, routing_key=QUEUE, delivery_mode=2,
                        content_type="application/json", content_encoding="utf-8", retry=False)
    start_response("202 Accepted", [("Content-Type", "application/json"), ("Location", "/")])
    return [b'{"status":"accepted"}']
