"""No stored value can make a page answer 500.

Extreme values are written straight into every table a page reads (the worker and the intake
bound what they write, but rows written before a bound existed, by hand, or by a future bug must
not take a page down): times at the ends of datetime's range, huge and negative counts and
durations, NaN and infinity where floats are stored (NaN only on PostgreSQL: SQLite stores it as
NULL), empty and maximal strings, right-to-left and other odd text, deeply nested JSON, enormous
line numbers, empty frames, event data of the wrong shape. Then every page and REST endpoint is
opened by a logged-in member, with every id of those rows: each answer is < 500.

The pages are found by walking the URL patterns (like ``tests/dashboards/test_tenant_isolation.py``),
so a page added later is opened here too.
"""

from __future__ import annotations

import math
import traceback
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection
from django.utils import timezone as dj_timezone

from accounts.models import Invite, Membership
from processing.models import (
    AlertNotice,
    AlertSubscription,
    AppAlertSettings,
    Commit,
    CommitFile,
    EmailAlias,
    Event,
    Issue,
    IssueFollowup,
    IssueHourly,
    IssueUser,
    Release,
    ReleaseCommit,
    RejectionCount,
    TransactionName,
    TransactionRollup,
    TransactionTrace,
)
from tests.dashboards.rows import fixture_event
from tests.dashboards.test_tenant_isolation import path_fill, routes_walk
from tests.factories import org_app_create, user_create

MIN = datetime.min.replace(tzinfo=timezone.utc)
MAX = datetime.max.replace(tzinfo=timezone.utc)
BIG = 2**63 - 1
INT = 2**31 - 1
ODD = "\u202eevil\u202c \u05e9\u05dc\u05d5\u05dd \U0001f4a5 \u0301\ufeff<b>&amp;</b>{{ x }}{% now %}\r\n\t"


def _nested(depth: int):
    value: object = "bottom"
    for index in range(depth):
        value = {"k": [value, index]} if index % 2 else [value]
    return value


def _floats() -> list[float]:
    # SQLite has no NaN: it stores NULL, which a NOT NULL column refuses. (JSON holds neither
    # NaN nor infinity on either database, so JSON columns get the largest finite floats.)
    odd = [math.inf, -math.inf, -1.0, 0.0, 1e308, 5e-324]
    return [math.nan, *odd] if connection.vendor == "postgresql" else odd


def _text(length: int) -> str:
    return (ODD * (length // len(ODD) + 1))[:length]


ODD_EVENTS = [
    {},
    {"message": ""},
    {"exception": {"type": "", "value": None, "chain": [None, 1, {"type": ODD, "stacktrace": "x"}]}},
    {"exception": "not a dict", "stacktrace": {"frames": []}},
    {"exception": {"type": "E"}, "stacktrace": {"frames": "not a list"}},
    {
        "message": _text(10_000),
        "culprit": _text(1000),
        "level": ODD,
        "logger": {"a": 1},
        "stacktrace": {
            "frames": [
                {},
                None,
                "frame",
                {"lineno": 10**30, "pre_context": ["a", None, 3], "context_line": 5, "post_context": "x"},
                {"lineno": -(10**30), "pre_context": ["a"] * 3, "context_line": "b", "post_context": ["c"]},
                {"lineno": "99999999999999999999999999", "filename": "", "function": None, "vars": _nested(60)},
                {"lineno": 1.5e308, "in_app": "yes", "abs_path": ODD, "vars": [1, 2, 3]},
                {"lineno": True, "module": ["x"], "vars": {"": None, ODD: _nested(30)}},
                {"lineno": "²", "pre_context": ["a"], "context_line": "b"},
                {"lineno": "9" * 5000, "pre_context": ["a"], "context_line": "b"},
            ]
        },
        "http": {"url": ODD, "method": 5, "headers": [[1, 2], [3]], "cookies": ODD, "data": _nested(80), "env": "x"},
        "user": {"id": BIG * 10, "email": ODD},
        "machine": ["a"],
        "tags": {"t" * 300: "v" * 10_000, "n": None, "f": 1.5},
        "extra": _nested(100),
        "template": {"lineno": 10**25, "context_line": ODD},
        "param_message": {"message": None},
        "release": ["v1"],
        "environment": {"e": 1},
        "timestamp": "9999-12-31T23:59:59+00:00",
    },
    [1, 2, 3],
    "a string",
    12345,
    _nested(200),
]


@pytest.fixture
def extremes(db, client):
    """A logged-in owner of an app whose every table holds extreme rows; returns (client, ids)."""
    user, organization, app = org_app_create(org_name=_text(100))
    odd_member = user_create(email=_text(60).replace(" ", "") + "@x.example")
    Membership.objects.create(organization=organization, user=odd_member, role="not-a-role")
    app.events_per_minute = INT
    app.token_rotated_at = MIN
    app.save()
    # Pending invites at both ends of time (the org page lists them with their expiry).
    Invite.objects.create(organization=organization, email="odd@x.example", invited_by=user, token_hash="f" * 64, expires_at=MAX)
    Invite.objects.create(organization=organization, email="old@x.example", invited_by=user, token_hash="e" * 64, sent_at=MIN, expires_at=MIN)
    now = dj_timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)

    issues = []
    for index, (first, last, title) in enumerate(
        [(MIN, MAX, ""), (MAX, MIN, _text(500)), (now, now, ODD), (MIN, MIN, "x"), (MAX, MAX, "y")]
    ):
        issues.append(
            Issue.objects.create(
                app=app,
                fingerprint=f"{index:040d}",
                grouping_reason=_text(5000),
                title=title,
                culprit=_text(500),
                level=_text(20),
                exception_type=_text(200),
                status=Issue.Status.UNRESOLVED if index % 2 else "weird",
                is_regressed=True,
                regressed_at=[MIN, MAX, None, now, MAX][index],
                resolved_at=MIN,
                event_count=[BIG, 0, INT, 1, BIG][index],
                users_count=[INT, 0, 1, INT, 0][index],
                first_seen=first,
                last_seen=last,
            )  # fmt: skip
        )
    for status in (Issue.Status.RESOLVED, Issue.Status.IGNORED):
        issues.append(
            Issue.objects.create(
                app=app,
                fingerprint=uuid.uuid4().hex,
                title=ODD,
                status=status,
                event_count=BIG,
                first_seen=MAX,
                last_seen=MIN,
            )  # fmt: skip
        )
    events = []
    for index, data in enumerate([fixture_event(), *ODD_EVENTS]):
        moment = [MIN, MAX, now][index % 3]
        events.append(
            Event.objects.create(
                event_id=uuid.uuid4(),
                app=app,
                issue=issues[index % 3],
                timestamp=moment,
                received_at=[MAX, MIN, now][index % 3],
                title=_text(500),
                culprit=_text(500),
                user_key=_text(200),
                release=_text(200),
                environment=_text(100),
                data=data,
            )  # fmt: skip
        )
    for issue in issues:
        IssueHourly.objects.create(app=app, issue=issue, hour=hour, count=INT)
        IssueHourly.objects.create(app=app, issue=issue, hour=hour - timedelta(hours=3), count=0)
        IssueHourly.objects.create(app=app, issue=issue, hour=MIN, count=INT)
        IssueUser.objects.create(issue=issue, user_key=_text(200))
    for reason in ("", _text(40), "rate_limited"):
        RejectionCount.objects.create(app=app, reason=reason, hour=hour, count=BIG)
    RejectionCount.objects.create(app=app, reason="old", hour=MIN, count=BIG)

    releases = []
    for index, deployed_at in enumerate([MIN, MAX, now, now - timedelta(hours=2), MAX]):
        releases.append(
            Release.objects.create(
                app=app,
                version=_text(200 - index) if index else "",
                environment=["", _text(100), "prod"][index % 3],
                branch=_text(200),
                status=_text(40),
                deployed_at=deployed_at,
                deploy_order=[BIG, 1, 2, 0, BIG - 1][index],
            )  # fmt: skip
        )
    commits = []
    for index, moment in enumerate([MIN, MAX, now]):
        commit = Commit.objects.create(
            app=app, sha=f"{index:x}" * 40, author_name=_text(200), author_email=_text(254), message=_text(20_000), timestamp=moment
        )  # fmt: skip
        commits.append(commit)
        for release in releases:
            ReleaseCommit.objects.create(release=release, commit=commit, position=[INT, 0, 5][index])
        for position, hunks in enumerate(
            [[], [[BIG, BIG, -1, 0]], "not hunks", [[1]], _nested(50), [[1, 2, 3, 4]] * 2000]
        ):
            CommitFile.objects.create(
                app=app, commit=commit, path=_text(499) + str(position), status=_text(20), hunks=hunks
            )
    for index, issue in enumerate(issues[:5]):
        IssueFollowup.objects.create(
            issue=issue, first_release=releases[index].version, first_environment=releases[index].environment,
            regressed_release=releases[(index + 1) % 5].version, suspect_commit=commits[index % 3],
            suspect_reason=_text(3000), assignee=user if index % 2 else None, assigned_manually=bool(index % 2),
            resolved_in_release=releases[index], regression_alerted_at=MAX, spike_alerted_at=MIN, last_alert_at=MAX,
        )  # fmt: skip
        AlertNotice.objects.create(
            app=app, issue=issue, kind=_text(16), recipient=_text(254), created_at=MIN, sent_at=MAX
        )
    AppAlertSettings.objects.create(
        app=app, spike_threshold=INT, spike_window_minutes=INT, issue_window_minutes=0, digest_minutes=INT,
        webhook_url="https://" + "a" * 480 + ".example/",
    )  # fmt: skip
    AlertSubscription.objects.create(app=app, user=user, mode="not-a-mode")
    EmailAlias.objects.create(user=user, email=_text(200) + "@x.example", verified_at=MAX, verification_sent_at=MIN)

    total = TransactionName.objects.create(app=app, name=TransactionName.TOTAL, first_seen=MIN)
    names = [total] + [
        TransactionName.objects.create(app=app, name=name, kind=_text(60), first_seen=moment)
        for name, moment in [(_text(300), MAX), (ODD, MIN), (TransactionName.OTHER, now), ("x", now)]
    ]
    floats = _floats()
    blobs = [b"", b"\x00", b"\xff" * 13, bytes(range(256)), b"\x08\x00\x00\x00\x00" + b"\xff" * 8 + b"\x01" * 64]
    for index, name in enumerate(names):
        for resolution, step in ((60, timedelta(minutes=1)), (3600, timedelta(hours=1)), (86400, timedelta(days=1))):
            bucket = datetime.fromtimestamp(now.timestamp() // resolution * resolution, tz=timezone.utc)
            for back in range(3):
                value = floats[(index + back) % len(floats)]
                TransactionRollup.objects.create(
                    app=app, name=name, resolution=resolution, bucket=bucket - step * back,
                    count=[BIG, 0, 1][back], errors=[BIG, 5, 0][back], sum_ms=value, min_ms=floats[(index + 1) % len(floats)],
                    max_ms=floats[(index + 2) % len(floats)], sketch=blobs[(index + back) % len(blobs)],
                    span_base_ms=[value, 0.0, -1.0][back],
                    span_ms=[{"db": -1e308, "": None, ODD: "x"}, [], {"app": 1e308, "db": 1e308}][back],
                )  # fmt: skip
        for back, value in enumerate(floats):
            TransactionTrace.objects.create(
                app=app, name=name, trace_id=f"{index}-{back}", timestamp=now - timedelta(minutes=back), duration_ms=value,
                result=_text(40), hostname=_text(200), release=_text(200), spans_dropped=INT,
                spans=[
                    [], None, "x", {"id": "a", "parent": "b", "start": "c", "duration": None},
                    {"id": 1, "parent": 1, "start": 1e308, "duration": -1e308, "signature": ODD, "sql": _text(10_000),
                     "stack": [{"lineno": 10**30}, None]},
                    {"id": 2, "parent": 1, "start": -1e308, "duration": 1e308, "kind": None},
                ][back % 3 :],
            )  # fmt: skip
    ids = {
        "org_id": [organization.public_id],
        "app_id": [app.public_id],
        "issue_id": [issue.id for issue in issues],
        "event_id": [event.event_id for event in events],
        "release_id": [release.id for release in releases],
        "transaction_id": [name.id for name in names[1:]],
        "traces": {name.id: list(name.traces.values_list("id", flat=True)) for name in names},
    }
    client.force_login(user)
    return client, ids


def _fills(route, ids: dict) -> list[dict]:
    """One fill per id of each kind the route takes (the others held at their first value);
    parameters that are not ids (tokens) get a junk value."""
    base = {name: ids[name][0] if name in ids else "junk-token" for name in route.params}
    fills = [base]
    for name in route.params:
        for value in ids.get(name, [])[1:]:
            fills.append({**base, name: value})
    return fills


def _get(client, url: str) -> str | None:
    """None when the answer is < 500, else what went wrong."""
    try:
        response = client.get(url)
    except Exception as exc:  # noqa: BLE001 - the failure is reported with where it happened
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return f"GET {url} raised {type(exc).__name__}: {exc} ({frame.filename}:{frame.lineno})"
    if response.status_code >= 500:
        return f"GET {url} -> {response.status_code}"
    return None


def test_every_page_survives_extreme_stored_values(extremes):
    client, ids = extremes
    failures = []
    urls = []
    for route in routes_walk():
        if route.name == "logout":
            continue
        for values in _fills(route, ids):
            urls.append(path_fill(route, values))
        if route.name in ("performance", "transaction_detail", "issue_list"):
            base = path_fill(route, {name: ids[name][0] for name in route.params})
            urls += [f"{base}?range={key}" for key in ("1h", "24h", "7d", "30d")]
            if route.name == "transaction_detail":
                for name_id in ids["transaction_id"]:
                    for trace_id in ids["traces"][name_id]:
                        urls.append(
                            path_fill(route, {**{n: ids[n][0] for n in route.params}, "transaction_id": name_id})
                            + f"?range=1h&trace={trace_id}"
                        )
            if route.name == "issue_list":
                urls += [
                    f"{base}?status={status}&sort={sort}"
                    for status in ("resolved", "ignored")
                    for sort in ("first_seen", "count")
                ]
    for url in urls:
        problem = _get(client, url)
        if problem:
            failures.append(problem)
    assert len(urls) > 50
    # The same cause fails many URLs: list each cause once.
    causes: dict[str, str] = {}
    for problem in failures:
        causes.setdefault(problem.split(" raised ", 1)[-1], problem)
    assert not failures, f"{len(failures)} of {len(urls)} pages failed:\n" + "\n".join(causes.values())
