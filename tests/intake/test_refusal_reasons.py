"""Refusals an owner can act on: each refused body (400 naming the field, 413, 429) is logged once
per app and reason a minute, however many arrive, and the issue list's "Dropped by the intake"
shows per reason the count and the latest refusal's message, escaped.

The requests go through the real intake view; the counts through the real broker and the
worker's service; the page through the dashboard view."""

from __future__ import annotations

import json
import logging
import re
import time
import zlib

import pytest
from django.urls import reverse

from intake import queue as intake_queue
from intake import rejections
from intake.auth import app_credentials_cache_clear
from processing.services import rejections_record
from tests.factories import org_app_token_create

from .conftest import IntakeApp, agent_bodies

pytestmark = pytest.mark.django_db

GOOD = next(b for b in agent_bodies() if "django" in b.name)
# A frame whose line number is a string: msgspec names the field in its message.
BAD_FIELD = zlib.compress(
    json.dumps({"message": "boom", "stacktrace": {"frames": [{"filename": "a.py", "lineno": "seven", "function": "f"}]}}).encode()
)
BAD_FIELD_MESSAGE = "invalid event: Expected `int | null`, got `str` - at `$.stacktrace.frames[0].lineno`"

@pytest.fixture
def clock(monkeypatch):
    # The refusals' clock stands still (at the test's start) unless a test moves it: every request
    # falls in the same minute, wherever the real minute boundary is.
    now = [time.time()]
    monkeypatch.setattr(rejections, "_clock", lambda: now[0])
    return now

def refusal_records(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "intake.rejections" and "refused a request" in record.getMessage()]

def shipped_rows(broker) -> list[dict]:
    rejections.rejections_flush()
    rows = []
    # The background flusher may have shipped some already: read everything that was published.
    for headers, args in broker.messages(intake_queue.DEFAULT_QUEUE):
        assert headers["task"] == intake_queue.REJECTIONS_TASK
        rows.extend(args[0])
    return rows

def two_apps():
    user, organization, app, token = org_app_token_create()
    _, organization2, app2, token2 = org_app_token_create()
    return user, IntakeApp(app=app, organization=organization, token=token), IntakeApp(app=app2, organization=organization2, token=token2)

def test_a_flood_of_each_refusal_is_one_log_line_per_app_and_reason_a_minute(client, broker, caplog, clock, settings):
    _, first, second = two_apps()
    settings.OPBEAT_LIMITS = {**settings.OPBEAT_LIMITS, "max_compressed_bytes": 1000}
    too_big = b"x" * 5000
    caplog.set_level(logging.WARNING, logger="intake")
    for intake_app, times in ((first, 7), (second, 3)):
        for _ in range(times):
            assert intake_app.post(client, BAD_FIELD).status_code == 400
            assert intake_app.post(client, too_big).status_code == 413
    first.app.events_per_minute = 1
    first.app.save(update_fields=["events_per_minute"])

    app_credentials_cache_clear()
    limited = [first.post(client, GOOD.body).status_code for _ in range(6)].count(429)
    assert limited >= 4  # one minute boundary at most can fall between six posts

    records = refusal_records(caplog)
    lines = sorted(record.getMessage() for record in records)
    assert len(records) == 5, lines  # (first, invalid), (first, too_large), (first, rate_limited), (second, ...) x2
    by_key = {(record.args[0], record.args[1]): record for record in records}
    assert set(by_key) == {
        (first.app.pk, "invalid"), (first.app.pk, "too_large"), (first.app.pk, "rate_limited"),
        (second.app.pk, "invalid"), (second.app.pk, "too_large"),
    }  # fmt: skip
    invalid = by_key[(first.app.pk, "invalid")].getMessage()
    assert f"app {first.app.pk}: invalid (400)" in invalid and "$.stacktrace.frames[0].lineno" in invalid
    assert f"app {first.app.pk}: too_large (413)" in by_key[(first.app.pk, "too_large")].getMessage()
    assert "over the limit of 1000 bytes" in by_key[(first.app.pk, "too_large")].getMessage()
    assert "quota of 1 events per minute" in by_key[(first.app.pk, "rate_limited")].getMessage()
    assert all(record.levelno == logging.WARNING for record in records)

    # The next minute: one more line per app and reason, saying how many were not logged.
    caplog.clear()
    clock[0] += 60
    for _ in range(4):
        assert second.post(client, BAD_FIELD).status_code == 400
    [record] = refusal_records(caplog)
    assert f"app {second.app.pk}: invalid (400)" in record.getMessage()
    assert "2 more of this app and reason not logged since the previous line" in record.getMessage()

    # Every refusal is counted all the same, with the latest message as the example.
    totals: dict[tuple[int, str], int] = {}
    for row in shipped_rows(broker):
        totals[(row["app_id"], row["reason"])] = totals.get((row["app_id"], row["reason"]), 0) + row["count"]
        assert row["hour"] % 3600 == 0 and row["example"]
    assert totals == {
        (first.app.pk, "invalid"): 7, (first.app.pk, "too_large"): 7, (first.app.pk, "rate_limited"): limited,
        (second.app.pk, "invalid"): 7, (second.app.pk, "too_large"): 3,
    }  # fmt: skip

def test_the_dashboard_shows_each_reason_with_its_count_and_latest_message_escaped(client, broker, clock, settings):
    user, first, other = two_apps()
    settings.OPBEAT_LIMITS = {**settings.OPBEAT_LIMITS, "max_compressed_bytes": 1000}
    for _ in range(3):
        assert first.post(client, BAD_FIELD).status_code == 400
    assert first.post(client, b"x" * 5000).status_code == 413
    # An agent-controlled header quoted in the message: the newest "invalid" example.
    assert first.post(client, BAD_FIELD, headers={"Content-Encoding": "<b>br</b>"}).status_code == 415
    assert other.post(client, BAD_FIELD).status_code == 400
    # The worker adds the shipped rows up (one per app, reason and hour).
    assert rejections_record(rows=shipped_rows(broker)) == 3
    client.force_login(user)
    url = reverse("dashboards:issue_list", args=[first.organization.public_id, first.app.public_id])
    html = client.get(url).content.decode()
    drops = re.search(r'<table class="compact rejections">(.*?)</table>', html, re.S).group(1)
    shown = re.findall(r'<tr class="reason"><td>(\w+)</td><td class="num">([\d,]+)</td></tr>', drops)
    assert shown == [("invalid", "4"), ("too_large", "1")]
    examples = re.findall(r'latest: HTTP (\d+),[^<]*</span><br><code class="refusal">(.*?)</code>', drops)
    assert examples == [
        ("415", "unsupported Content-Encoding &#x27;&lt;b&gt;br&lt;/b&gt;&#x27;; send gzip, deflate or plain JSON"),
        ("413", "body of 5000 bytes is over the limit of 1000 bytes"),
    ]
    assert "<b>br</b>" not in html

    # The field-path example, once it is the latest of its reason.
    clock[0] += 3600
    assert first.post(client, BAD_FIELD).status_code == 400
    assert rejections_record(rows=shipped_rows(broker)) == 1
    drops = re.search(r'<table class="compact rejections">(.*?)</table>', client.get(url).content.decode(), re.S).group(1)
    assert '<td>invalid</td><td class="num">5</td>' in drops
    assert f'latest: HTTP 400, {time.strftime("%b %-d, %H:00", time.gmtime(clock[0]))} UTC hour' in drops
    assert BAD_FIELD_MESSAGE in drops
    # Another app's refusals are not on this app's page.
    assert drops.count("<tr class=\"reason\">") == 2
