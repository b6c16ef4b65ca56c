"""Per-app quotas: at most ``App.events_per_minute`` (or the OPBEAT_LIMITS default) events per
calendar minute, counted across every intake process.

With Redis (settings.REDIS_URL) the count is one pipelined round trip, INCR then EXPIRE on a
per-minute key; without it (embedded mode) Django's cache, a file cache shared by the machine's
processes, whose increment is not atomic across processes: close enough for a quota.

If Redis is unreachable the request is let through: a quota is not worth losing events over,
and the queue still protects the worker. This module never touches the database.
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from django.core.cache import cache

from .errors import RateLimited

logger = logging.getLogger(__name__)

# Keys outlive their minute a little, so a clock skew between processes does not reset counts.
KEY_SECONDS = 120

_client: redis.Redis | None = None
_client_url: str | None = None
_last_warning = 0.0


def _redis() -> redis.Redis:
    # redis-py's pool notices a fork and reconnects in the child, so one client per process.
    global _client, _client_url
    if _client is None or _client_url != settings.REDIS_URL:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        _client_url = settings.REDIS_URL
    return _client


def _count_increment(key: str) -> int:
    if settings.REDIS_URL:
        pipe = _redis().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, KEY_SECONDS)
        count, _ = pipe.execute()
        return int(count)
    cache.add(key, 0, KEY_SECONDS)
    return cache.incr(key)


def app_rate_limit(*, app_pk: int, events_per_minute: int | None) -> None:
    """Count one event for the app; raise ``RateLimited`` (429) past its quota this minute."""
    global _last_warning
    limit = events_per_minute if events_per_minute is not None else settings.OPBEAT_LIMITS["default_events_per_minute"]
    now = time.time()
    minute = int(now) // 60
    try:
        count = _count_increment(f"intake:rate:{app_pk}:{minute}")
    except Exception as exc:  # noqa: BLE001 - fail open (see the module docstring); warn at most once a minute
        if now - _last_warning > 60:
            _last_warning = now
            logger.warning("intake: rate limiter unavailable, not limiting: %s", exc)
        return
    if count > limit:
        retry_after = 60 - int(now) % 60
        raise RateLimited(
            f"this app is over its quota of {limit} events per minute; retry in {retry_after} s",
            retry_after=retry_after,
            app_pk=app_pk,
        )
