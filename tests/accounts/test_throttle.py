"""accounts.throttle: fixed windows of attempts per key, in the configured cache."""

from django.core.cache import cache

from accounts.throttle import Limit, throttle_check, throttle_hit, throttle_reset


def test_hits_past_the_limit_are_refused_until_the_window_ends():
    cache.clear()
    limit = Limit(count=3, seconds=60)
    now = 1_000_020.0  # 20 s into a window that starts at 1_000_020 - 1_000_020 % 60
    assert [throttle_hit("t:a", limit, now=now) for _ in range(3)] == [0, 0, 0]
    assert throttle_check("t:a", limit, now=now) == 60 - (1_000_020 % 60)
    assert throttle_hit("t:a", limit, now=now) == 60 - (1_000_020 % 60)
    assert throttle_hit("t:b", limit, now=now) == 0, "another key has its own count"
    assert throttle_hit("t:a", limit, now=now + 60) == 0, "the next window starts over"


def test_reset_forgets_the_current_window():
    cache.clear()
    limit = Limit(count=1, seconds=60)
    assert throttle_hit("t:r", limit, now=120.0) == 0
    assert throttle_hit("t:r", limit, now=121.0) > 0
    throttle_reset("t:r", limit, now=122.0)
    assert throttle_hit("t:r", limit, now=123.0) == 0
