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


def test_two_limits_on_one_key_count_apart_when_their_windows_start_together():
    cache.clear()
    short, day = Limit(count=1, seconds=600), Limit(count=3, seconds=86400)
    midnight = 20_834 * 86_400.0  # a 10-minute window and a day's start here together
    for step in range(3):
        now = midnight + step * 660
        assert throttle_hit("t:two", short, now=now) == 0
        assert throttle_hit("t:two", day, now=now) == 0, f"mail {step + 1} of 3 in the day"
    assert throttle_hit("t:two", day, now=midnight + 4 * 660) > 0
