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


@pytest.mark.parametrize(
    "key", ["apiKey", "X-Api-Key", "api.key", "access-token", "userPwd", "user_ssn", "SSN", "private_key", "privateKey",
            "JWT", "id_jwt", "db_pass", "aws_access_key_id", "user.password", "set-cookie"],
)  # fmt: skip
def test_key_names_are_compared_without_case_or_separators(scrubber, key):
    assert scrubber.key_is_sensitive(key)


@pytest.mark.parametrize(
    "key", ["classname", "author", "is_authenticated", "password_length", "token_type", "session_count", "passenger",
            "description", "compass"],
)  # fmt: skip
def test_short_names_match_whole_words_and_descriptive_names_are_kept(scrubber, key):
    assert not scrubber.key_is_sensitive(key)


@pytest.mark.parametrize(
    "text",
    [
        "order 1700000000123 shipped 2024-01-15T10:00:00Z",  # a timestamp in ms: starts with 1, not a card
        "request 550e8400-e29b-41d4-a716-446655440000",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "ssh://git@github.com/acme/shop.git",
        "Password is too short",
        "CSRF token missing or incorrect",
        "Basic authentication required",
        "if password == expected:",
        "SELECT * FROM users WHERE password = %s",
        "https://shop.example.com/v1/orders?page=2",
        "192.168.100.200 version 1.2.3.4",
    ],
)
def test_ordinary_text_is_kept(scrubber, text):
    assert scrubber.text(text) == text


@pytest.mark.parametrize(
    "text,expected",
    [
        ("redis://:pw@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
        ("https://ghp_0123456789abcdefghij@github.com/x", f"https://{MASK}@github.com/x"),
        ("Set-Cookie: sid=abc; Path=/; HttpOnly", f"Set-Cookie: sid={MASK}; Path=/; HttpOnly"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEv...", MASK),  # cut before its END line: masked to the end
        ("pan 4111-1111-1111-1111.", f"pan {MASK}."),
        ("amex 3782 822463 10005", f"amex {MASK}"),
        ('{"password": "p", "n": 1}', f'{{"password": "{MASK}", "n": 1}}'),
        ('[{"token": "t"}]', f'[{{"token": "{MASK}"}}]'),
        ("login with password 'swordfish' failed", f"login with password '{MASK}' failed"),
    ],
)
def test_secrets_inside_text(scrubber, text, expected):
    assert scrubber.text(text) == expected


def test_a_json_string_without_secrets_keeps_its_layout(scrubber):
    assert scrubber.text('{ "a" : [1, 2] }') == '{ "a" : [1, 2] }'


def test_any_depth_and_cycles(scrubber):
    deep: dict = {"password": "p"}
    for _ in range(40):
        deep = {"level": deep}
    out = scrubber.value(deep)
    for _ in range(40):
        out = out["level"]
    assert out == {"password": MASK}
    too_deep: list = ["4111 1111 1111 1111"]
    for _ in range(200):
        too_deep = [too_deep]
    assert "4111" not in repr(scrubber.value(too_deep))  # past the depth limit it is masked whole
    cyclic: dict = {"name": "a"}
    cyclic["self"] = cyclic
    cyclic["again"] = cyclic
    assert scrubber.value(cyclic) == {"name": "a", "self": MASK, "again": MASK}


def test_a_value_under_a_sensitive_key_is_never_repr_d(client, recording):
    calls = []

    class Secret:
        def __repr__(self):
            calls.append(1)
            return "Secret('s3cr3t')"

    def view():
        api_token = Secret()  # noqa: F841
        settings = {"a": {"b": {"c": {"password": Secret()}}}}  # noqa: F841
        raise RuntimeError("x")

    try:
        view()
    except RuntimeError:
        client.capture_exception()
    [frame] = [f for f in recording.events[0]["stacktrace"]["frames"] if f["function"] == "view"]
    assert frame["vars"]["api_token"] == MASK
    assert "s3cr3t" not in repr(frame["vars"]["settings"])
    assert calls == []  # the one past the repr depth was masked before the container's repr
