"""The dashboard over rows the worker really wrote: the captured opbeat bodies go through
``processing.digest.events_digest`` (the worker's own code), then a member reads them."""

from __future__ import annotations

import re
import time
import uuid

from django.utils import timezone

from intake.queue import envelope_new
from processing.digest import events_digest
from tests.conftest import OPBEAT_FIXTURES
from tests.dashboards.rows import fixture_event


def digest(app, names: list[str]) -> list[str]:
    """Digest fixture bodies as the intake would enqueue them; returns their event ids (hex)."""
    envelopes = []
    for name in names:
        data = fixture_event(name)
        data["timestamp"] = timezone.now().isoformat()
        envelopes.append(envelope_new(kind="error", app_id=app.pk, received_at=time.time(), data=data))
    result = events_digest(envelopes=envelopes)
    assert result.stored == len(envelopes)
    return [envelope["event_id"] for envelope in envelopes]


def issue_rows(html: str) -> list[tuple[str, str, str]]:
    """(title, culprit, events) of each issue as shown in the list."""
    return [
        (title, culprit, events)
        for title, culprit, events in re.findall(
            r'<td class="title">\s*<a href="[^"]+">([^<]+)</a>.*?<div class="culprit">([^<]*)</div>\s*</td>\s*<td class="num">([\d,]+)</td>',
            html,
            re.S,
        )
    ]


def test_captured_opbeat_errors_are_grouped_and_readable(member):
    names = sorted(path.name for path in OPBEAT_FIXTURES.glob("*_errors.json"))
    event_ids = digest(member.app, names)

    html = member.client.get(member.url("issue_list")).content.decode()
    # Django 3.1 on Python 3.6 and Django 5.2 on 3.11 raise the same error in the same view: one
    # issue; the same for Flask 2.0 and 3.1. The log message is grouped by its template.
    assert sorted(issue_rows(html)) == sorted([
        ("ZeroDivisionError: division by zero", "app_flask.error", "2"),
        ("ZeroDivisionError: division by zero", "bench.views.error", "2"),
        ("KeyError: &#x27;missing&#x27;", "__main__.&lt;module&gt;", "1"),
        ("Payment p-123 failed for user alice", "demo.payments", "1"),
        ("Something happened", "demo", "1"),
    ])
    assert '<code>ZeroDivisionError</code></td><td class="num">4<' in html

    # The intake's Location for the first Django event leads to that event on its issue page.
    django_event = event_ids[names.index("opbeat361-patched_py311_django5219_00_POST_errors.json")]
    response = member.client.get(member.url("event_redirect", uuid.UUID(django_event)))
    assert response.status_code == 302
    page = member.client.get(response["Location"]).content.decode()
    assert f"Event <code>{django_event}</code>" in page
    assert "Grouped by exception type ZeroDivisionError and in-app frames bench.views" in page
    assert '<li class="current"><span class="ln">23</span><code>    return HttpResponse(str(1 / divisor))</code></li>' in page
    assert 'rel="prev"' in page or 'rel="next"' in page


def test_redelivery_is_not_counted_twice_and_a_resolved_issue_regresses(member):
    name = "opbeat361_py36_clientapi_02_POST_errors.json"
    data = fixture_event(name)
    data["timestamp"] = timezone.now().isoformat()
    envelope = envelope_new(kind="error", app_id=member.app.pk, received_at=time.time(), data=data)
    events_digest(envelopes=[envelope])
    events_digest(envelopes=[envelope])

    html = member.client.get(member.url("issue_list")).content.decode()
    assert issue_rows(html) == [("KeyError: &#x27;missing&#x27;", "__main__.&lt;module&gt;", "1")]
    issue_url = re.search(r'<td class="title">\s*<a href="([^"]+)"', html).group(1)
    issue_id = int(issue_url.rstrip("/").rsplit("/", 1)[1])
    member.client.post(member.url("issue_status", issue_id), {"action": "resolve"})
    assert issue_rows(member.client.get(member.url("issue_list")).content.decode()) == []

    digest(member.app, [name])

    html = member.client.get(member.url("issue_list")).content.decode()
    assert issue_rows(html) == [("KeyError: &#x27;missing&#x27;", "__main__.&lt;module&gt;", "2")]
    assert '<span class="badge regressed">regressed</span>' in html

