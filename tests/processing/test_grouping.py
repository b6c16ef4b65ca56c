"""Grouping rules, on the bodies the original opbeat agent sent and on hand-made events (no Django)."""

from __future__ import annotations

import copy
import json

import pytest

from processing.grouping import event_culprit, event_group, event_title, frame_is_in_app, message_normalize
from tests.conftest import OPBEAT_FIXTURES


def fixture(name: str) -> dict:
    return json.loads((OPBEAT_FIXTURES / f"{name}_POST_errors.json").read_text())


DJANGO_36 = "opbeat361_py36_django3114_00"
DJANGO_311 = "opbeat361-patched_py311_django5219_00"
FLASK_36 = "opbeat361_py36_flask203_00"
FLASK_311 = "opbeat361-patched_py311_flask313_00"


def test_same_error_under_two_django_versions_is_one_group():
    # The library frames differ between Django 3.1 and 5.2; the in-app frame is the same.
    old, new = event_group(fixture(DJANGO_36)), event_group(fixture(DJANGO_311))
    assert old.fingerprint == new.fingerprint
    assert old.reason == "Grouped by exception type ZeroDivisionError and in-app frames bench.views.error"


def test_flask_and_django_errors_are_different_groups():
    assert event_group(fixture(FLASK_36)).fingerprint == event_group(fixture(FLASK_311)).fingerprint
    assert event_group(fixture(FLASK_36)).fingerprint != event_group(fixture(DJANGO_36)).fingerprint
    assert event_group(fixture(FLASK_311)).reason == "Grouped by exception type ZeroDivisionError and in-app frames app_flask.error"


def test_line_numbers_do_not_split_a_group_but_functions_do():
    event = fixture(DJANGO_311)
    moved = copy.deepcopy(event)
    for frame in moved["stacktrace"]["frames"]:
        frame["lineno"] += 40
    assert event_group(moved).fingerprint == event_group(event).fingerprint
    renamed = copy.deepcopy(event)
    renamed["stacktrace"]["frames"][-1]["function"] = "other_view"
    assert event_group(renamed).fingerprint != event_group(event).fingerprint
    other_type = copy.deepcopy(event)
    other_type["exception"]["type"] = "ValueError"
    assert event_group(other_type).fingerprint != event_group(event).fingerprint


def test_library_frames_do_not_split_a_group():
    event = fixture(DJANGO_311)
    changed = copy.deepcopy(event)
    changed["stacktrace"]["frames"][0]["function"] = "something_else"
    assert event_group(changed).fingerprint == event_group(event).fingerprint


def test_reason_names_the_in_app_frames_newest_first():
    event = {
        "exception": {"type": "ZeroDivisionError"},
        "stacktrace": {
            "frames": [
                {"module": "django.core.handlers.base", "function": "_get_response", "library_frame": True},
                {"module": "app.views", "function": "index", "library_frame": False},
                {"module": "app.views", "function": "divide", "library_frame": False},
            ]
        },
    }
    assert event_group(event).reason == (
        "Grouped by exception type ZeroDivisionError and in-app frames app.views.divide, app.views.index"
    )


def test_in_app_flags_win_over_the_path():
    frame = {"abs_path": "/venv/lib/python3.11/site-packages/x.py"}
    assert frame_is_in_app(frame) is False
    assert frame_is_in_app({**frame, "in_app": True}) is True
    assert frame_is_in_app({**frame, "library_frame": False}) is True
    assert frame_is_in_app({"abs_path": "/srv/app/views.py", "library_frame": True}) is False
    assert frame_is_in_app({"abs_path": "/usr/lib/python3.11/json/decoder.py"}) is False
    assert frame_is_in_app({"abs_path": "/srv/app/views.py"}) is True


def test_logging_calls_group_by_template():
    event = fixture("opbeat361_py36_clientapi_01")
    other = copy.deepcopy(event)
    other["param_message"]["params"] = ["p-999", "bob"]
    other["message"] = "Payment p-999 failed for user bob"
    assert event_group(other).fingerprint == event_group(event).fingerprint
    assert event_group(event).reason == "Grouped by the message template 'Payment %s failed for user %s'"
    assert event_title(event) == "Payment p-123 failed for user alice"
    assert event_culprit(event) == "demo.payments"


def test_plain_messages_group_with_variable_parts_replaced():
    one = {"message": "Timeout after 30s talking to 10.0.0.7:5432 for order 9f86d081884c7d65 (bob@example.com)"}
    two = {"message": "Timeout after 45s talking to 10.0.0.9:5432 for order 2c26b46b68ffc68f (ann@example.org)"}
    three = {"message": "Refused after 45s talking to 10.0.0.9:5432 for order 2c26b46b68ffc68f (ann@example.org)"}
    assert event_group(one).fingerprint == event_group(two).fingerprint
    assert event_group(one).fingerprint != event_group(three).fingerprint
    assert "Timeout after <num>s talking to <ip> for order <hex> (<email>)" in event_group(one).reason


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("GET https://example.com/a/1?b=2 failed", "GET <url> failed"),
        ("user 550e8400-e29b-41d4-a716-446655440000 missing", "user <uuid> missing"),
        ("object at 0x7f11a513f5d0", "object at <hex>"),
        ("from fe80::1ff:fe23:4567:890a and ::1", "from <ip> and <ip>"),
        ("retry 3 of 10, waited 2.5 s", "retry <num> of <num>, waited <num> s"),
        ("a plain decade of facade", "a plain decade of facade"),
    ],
)
def test_message_normalize(message, expected):
    assert message_normalize(message) == expected


def test_client_fingerprint_wins():
    event = fixture(DJANGO_311)
    event["fingerprint"] = ["payments", "gateway-x"]
    other = fixture(FLASK_311)
    other["fingerprint"] = ["payments", "gateway-x"]
    assert event_group(event).fingerprint == event_group(other).fingerprint
    assert event_group(event).reason == "Grouped by the fingerprint the client sent: payments, gateway-x"


def test_exception_without_in_app_frames_or_without_frames():
    all_library = {
        "exception": {"type": "OSError", "value": "disk full"},
        "stacktrace": {"frames": [{"module": "shutil", "function": "copy", "abs_path": "/usr/lib/python3.11/shutil.py"}]},
    }
    assert "none of them in-app" in event_group(all_library).reason
    no_frames_1 = {"exception": {"type": "KeyError", "value": "'user 12'"}}
    no_frames_2 = {"exception": {"type": "KeyError", "value": "'user 99'"}}
    assert event_group(no_frames_1).fingerprint == event_group(no_frames_2).fingerprint
    assert event_title(no_frames_1) == "KeyError: 'user 12'"


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"exception": "boom", "stacktrace": [1, 2]},
        {"exception": {"type": 5}, "stacktrace": {"frames": [None, "x", {"function": ["f"]}]}},
        {"fingerprint": [None, {}], "param_message": {"message": ["x"]}, "message": {"a": 1}},
        {"message": "x" * 10_000 + "\n second line"},
    ],
)
def test_malformed_events_still_get_a_group_title_and_culprit(data):
    group = event_group(data)
    assert len(group.fingerprint) == 40 and group.reason
    title = event_title(data)
    assert title and len(title) <= 500 and "\n" not in title
    assert len(event_culprit(data)) <= 500


def test_culprit_is_the_newest_in_app_frame_when_the_client_sends_none():
    event = fixture(DJANGO_311)
    del event["culprit"]
    assert event_culprit(event) == "bench.views.error"
