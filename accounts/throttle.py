"""Counting attempts per key in fixed windows, in Django's cache (Redis in production, shared by
every web process; the file cache in the embedded run).

One rule for everything a stranger can repeat: logins, password-reset requests, invites and
verification mails. A caller names the key (``"login:ip:203.0.113.9"``), the limit and the window;
the answer is either "go on" or how many seconds until the window ends, so every refusal can say
when to try again. Windows are fixed, not sliding: a counter is one ``add`` and one ``incr``, and a
burst straddling a boundary gets at most twice the limit, which is fine for abuse limits.

Nothing here raises because the cache is down: a throttle that fails closed would let an outage
of Redis lock everyone out, so an unreachable cache lets the attempt through (and logs it).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone
from django.utils.timesince import timeuntil

logger = logging.getLogger(__name__)

_PREFIX = "throttle:"


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` hits per ``seconds``."""

    count: int
    seconds: int


def _cache_key(key: str, limit: Limit, window_start: int) -> str:
    # Keys carry addresses and emails a client chose: hashed, they have a fixed length and no
    # characters a cache backend refuses. The window's length is part of the key: two limits on
    # one key (10 minutes and a day) share a start at every midnight and must not share a count.
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{_PREFIX}{digest}:{limit.seconds}:{window_start}"


def _window(limit: Limit, now: float) -> tuple[int, int]:
    """(start of the current window, seconds until it ends)."""
    start = int(now // limit.seconds) * limit.seconds
    return start, max(1, int(start + limit.seconds - now + 0.999))


def throttle_hit(key: str, limit: Limit, *, now: float | None = None) -> int:
    """Count one attempt under ``key``. Returns 0 if it is within the limit, else the seconds until
    the window ends (the attempt is counted either way, so hammering does not help)."""
    now = time.time() if now is None else now
    start, retry_after = _window(limit, now)
    cache_key = _cache_key(key, limit, start)
    try:
        # add() creates the counter with its expiry only if it is missing; incr() is atomic on Redis.
        cache.add(cache_key, 0, timeout=limit.seconds + 5)
        count = cache.incr(cache_key)
    except ValueError:
        # The key expired between add() and incr(): this is the first hit of a fresh window.
        cache.set(cache_key, 1, timeout=limit.seconds + 5)
        count = 1
    except Exception:  # noqa: BLE001 - an unreachable cache must not lock people out (see the docstring)
        logger.warning("throttle: cache unavailable, letting %s through", key.split(":", 1)[0], exc_info=True)
        return 0
    return 0 if count <= limit.count else retry_after


def throttle_check(key: str, limit: Limit, *, now: float | None = None) -> int:
    """Like ``throttle_hit`` without counting: 0 if another attempt would be allowed, else the
    seconds until the window ends."""
    now = time.time() if now is None else now
    start, retry_after = _window(limit, now)
    try:
        count = cache.get(_cache_key(key, limit, start)) or 0
    except Exception:  # noqa: BLE001 - see throttle_hit
        return 0
    return 0 if count < limit.count else retry_after


def throttle_reset(key: str, limit: Limit, *, now: float | None = None) -> None:
    """Forget the current window's attempts under ``key`` (a successful login clears its failures)."""
    now = time.time() if now is None else now
    start, _ = _window(limit, now)
    try:
        cache.delete(_cache_key(key, limit, start))
    except Exception:  # noqa: BLE001 - see throttle_hit
        pass


def wait_text(seconds: int) -> str:
    """'4 minutes', '23 hours': when to try again, for the message a person reads. Rounded up to
    whole minutes: "0 minutes" would read as "now"."""
    now = timezone.now()
    seconds = max(60, -(-seconds // 60) * 60)
    # timeuntil joins number and unit with a no-break space; messages are also plain text.
    return timeuntil(now + timedelta(seconds=seconds), now, depth=1).replace("\xa0", " ")
