"""Scrubbing on by default: what leaves the process has secrets masked, everything else intact."""

from __future__ import annotations

import pytest

from opbeat_agent import Client
from opbeat_agent.config import DEFAULT_SCRUB_KEYS
from opbeat_agent.scrub import MASK, Scrubber

from .conftest import IDS


@pytest.fixture
def scrubber() -> Scrubber:
    return Scrubber(keys=DEFAULT_SCRUB_KEYS)


@pytest.mark.parametrize(
    "key",
    ["password", "PASSWORD", "user_password2", "passwd", "client_secret", "csrftoken", "X-Csrftoken", "access_token",
     "api_key", "X-Api-Key", "apikey", "Authorization", "auth", "Cookie", "sessionid", "credit_card", "creditCard",
     "credit-card"],
)
def test_sensitive_keys(scrubber, key):
    assert scrubber.value({key: "value", "name": "alice"}) == {key: MASK, "name": "alice"}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("4111111111111111", MASK),
        ("4111 1111 1111 1111", MASK),
        ("4111-1111-1111-1111", MASK),
        ("card 5500 0000 0000 0004 ok", f"card {MASK} ok"),
        ("378282246310005", MASK),  # Amex, 15 digits
        ("4111111111111112", "4111111111111112"),  # fails Luhn: an order number, kept
        ("1234567890123", "1234567890123"),
        ("call 0123 456 789", "call 0123 456 789"),
    ],
)
def test_card_numbers(scrubber, text, expected):
    assert scrubber.text(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        # A library frame's locals: the request's repr, the WSGI environ's raw URI.
        ("<Request 'http://h/error?foo=bar&password=pw' [GET]>", f"<Request 'http://h/error?foo=bar&password={MASK}' [GET]>"),
        ("/error?password=pw&q=1", f"/error?password={MASK}&q=1"),
        ("api_key=abc", f"api_key={MASK}"),
        ("retrying with token=abc123 now", f"retrying with token={MASK} now"),
        ("sessionid=abc; theme=dark", f"sessionid={MASK}; theme=dark"),
        ("x == 1 and y=2", "x == 1 and y=2"),
        ("password=", "password="),
    ],
)
def test_key_value_pairs_inside_strings(scrubber, text, expected):
    assert scrubber.text(text) == expected


def test_nested_structures(scrubber):
    data = {"user": {"name": "a", "auth": {"token": "t"}}, "items": [{"password": "p", "qty": 2}], "empty_password": ""}
    assert scrubber.value(data) == {
        "user": {"name": "a", "auth": MASK},
        "items": [{"password": MASK, "qty": 2}],
        "empty_password": "",  # nothing to hide: an empty value stays visible, which helps debugging
    }


def test_query_string_keeps_what_it_does_not_mask(scrubber):
    assert scrubber.query_string("foo=bar&password=pw&next=%2Fa%3Fb&flag") == f"foo=bar&password={MASK}&next=%2Fa%3Fb&flag"
    assert scrubber.query_string("pan=4111+1111+1111+1111&q=1") == f"pan={MASK}&q=1"


def test_url(scrubber):
    assert scrubber.url("http://h/p?x=1&api_key=abc#frag") == f"http://h/p?x=1&api_key={MASK}#frag"
    assert scrubber.url("http://h/p") == "http://h/p"


def test_bodies(scrubber):
    assert scrubber.body('{"password": "p", "items": [1]}') == {"password": MASK, "items": [1]}
    assert scrubber.body("user=a&password=p") == f"user=a&password={MASK}"
    assert scrubber.body({"csrfmiddlewaretoken": "x", "q": "y"}) == {"csrfmiddlewaretoken": MASK, "q": "y"}
    assert scrubber.body('{"truncated": "pass') == '{"truncated": "pass'


def test_scrubbing_can_be_turned_off_or_extended(recording):
    off = Client(**IDS, transport=recording, scrub_data=False)
    off.capture_message("x", extra={"password": "p"})
    custom = Client(**IDS, transport=recording, scrub_keys=["pin"], scrub_card_numbers=False)
    custom.capture_message("4111 1111 1111 1111", extra={"pin": "1234", "password": "p"})
    assert recording.events[0]["extra"] == {"password": "p"}
    assert recording.events[1]["extra"] == {"pin": MASK, "password": "p"}
    assert recording.events[1]["message"] == "4111 1111 1111 1111"


def test_event_http_section_is_scrubbed(client, recording):
    http = {
        "url": "http://shop/pay?card=1&token=abc",
        "query_string": "card=1&token=abc",
        "headers": {"Authorization": "Bearer x", "Cookie": "sessionid=abc; other=1", "Accept": "*/*"},
        "cookies": {"sessionid": "abc", "other": "1"},
        "data": {"password": "p", "amount": "10"},
        "env": {"REMOTE_ADDR": "1.2.3.4"},
    }
    client.capture_message("x", data={"http": http})
    sent = recording.events[0]["http"]
    assert sent["url"] == f"http://shop/pay?card=1&token={MASK}"
    assert sent["query_string"] == f"card=1&token={MASK}"
    # Cookies: every value masked (a session can hide under any name), the names kept.
    assert sent["headers"] == {"Authorization": MASK, "Cookie": f"sessionid={MASK}; other={MASK}", "Accept": "*/*"}
    assert sent["cookies"] == {"sessionid": MASK, "other": MASK}
    assert sent["data"] == {"password": MASK, "amount": "10"}
    assert sent["env"] == {"REMOTE_ADDR": "1.2.3.4"}
