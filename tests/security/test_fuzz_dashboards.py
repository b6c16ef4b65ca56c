"""Property-based fuzzing of the dashboard: every page (the URL patterns walked, as in
``tests/dashboards/test_tenant_isolation.py``) opened by a logged-in member with an arbitrary
query string, and every dashboard form posted with arbitrary fields, answers < 500, and the
server goes on serving: a plain request of the same page afterwards still works.

Not skippable: hypothesis is a test dependency. See ``test_fuzz_intake.py`` for the profile.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from hypothesis import given, settings, strategies as st

from processing.models import TransactionName, TransactionRollup, TransactionTrace
from processing.releases import release_store
from processing.sketches import sketch_encode
from tests.dashboards.rows import event_create, hourly_create, issue_create
from tests.dashboards.test_tenant_isolation import path_fill, routes_walk
from tests.factories import org_app_create
from tests.security.test_fuzz_intake import FUZZ

# Parameters the pages read, drawn more often than arbitrary names so values reach the parsers.
KNOWN_PARAMS = ["range", "from", "to", "page", "status", "sort", "q", "trace", "environment", "next", "format"]
FORM_FIELDS = [
    "action", "next", "assignee", "section", "mode", "email", "alias", "auto_assign", "alert_new", "alert_spike",
    "spike_threshold", "spike_window_minutes", "issue_window_minutes", "digest_minutes", "webhook_url",
]  # fmt: skip
values = (
    st.text(max_size=40)
    | st.integers(min_value=-(2**80), max_value=2**80).map(str)
    | st.sampled_from(
        [
            "9999-12-31T23:59", "0001-01-01T00:00+23:59", "9999-12-31T23:59:59-23:59", "2026-11-20T08:00", "custom",
            "1h", "30d", "-1", "0", "1e400", "nan", "NaN", "inf", "resolved", "count", "subscription", "policy",
            "alias-remove", "resolve", "//evil.example/", "\x00", "%", "' OR 1=1 --",
        ]
    )
    | st.datetimes().map(lambda moment: moment.isoformat())
    # PostgreSQL text cannot hold NUL: a value carrying one must never reach a query as it is.
    | st.text(max_size=8).map(lambda text: f"{text}\x00{text}")
)  # fmt: skip
# Each parameter a page reads is sent half of the time, beside a few arbitrary ones.
queries = st.fixed_dictionaries({}, optional={name: values for name in KNOWN_PARAMS}).flatmap(
    lambda known: st.dictionaries(st.text(max_size=12), values, max_size=2).map(lambda extra: {**extra, **known})
)
# Each form's own choices, so a fuzzed post reaches the branch behind them.
CHOICES = {
    "section": ["policy", "subscription", "alias", "alias-remove", ""],
    "action": ["resolve", "ignore", "reopen"],
    "mode": ["all", "assigned", "none"],
}
field_values = {name: st.sampled_from(CHOICES[name]) | values if name in CHOICES else values for name in FORM_FIELDS}
forms = st.fixed_dictionaries(
    # A section is always sent: the alerts page has four forms behind it.
    {"section": st.sampled_from(CHOICES["section"])},
    optional={name: strategy for name, strategy in field_values.items() if name != "section"},
).flatmap(lambda known: st.dictionaries(st.text(max_size=12), values, max_size=2).map(lambda extra: {**extra, **known}))


def _routes() -> list[tuple[str, str]]:
    """(name, module) of every page but logout (which would end the member's session)."""
    return sorted({(route.name or route.route, route.module) for route in routes_walk() if route.name != "logout"})


ROUTES = [name for name, _module in _routes()]
DASHBOARD_ROUTES = [name for name, module in _routes() if module.startswith("dashboards.")]
# Every page gets its own examples (a route drawn at random would leave rare pages unfuzzed).
PER_ROUTE = settings(FUZZ, max_examples=12)


@pytest.fixture
def site(db, client):
    """A logged-in owner's app with a row of each kind a page shows; returns (client, urls)."""
    user, organization, app = org_app_create()
    now = timezone.now()
    issue = issue_create(app=app)
    event = event_create(issue=issue)
    hourly_create(issue=issue, counts={now: 3})
    release = release_store(app=app, version="v1", deployed_at=now - timedelta(hours=1), commits=[])
    total = TransactionName.objects.create(app=app, name=TransactionName.TOTAL, first_seen=now)
    name = TransactionName.objects.create(app=app, name="GET /orders/", first_seen=now)
    sketch = sketch_encode(bins={100: 3, 120: 1}, zero_count=0)
    for row_name in (total, name):
        for resolution in (60, 3600, 86400):
            bucket = now.replace(second=0, microsecond=0) - timedelta(seconds=now.timestamp() % resolution // 60 * 60)
            TransactionRollup.objects.create(
                app=app, name=row_name, resolution=resolution, bucket=bucket, count=4, errors=1, sum_ms=10.0,
                min_ms=1.0, max_ms=5.0, sketch=sketch, span_base_ms=10.0, span_ms={"db": 4.0},
            )  # fmt: skip
    TransactionTrace.objects.create(
        app=app, name=name, trace_id="t1", timestamp=now, duration_ms=5.0,
        spans=[{"id": 1, "parent": 0, "start": 0.0, "duration": 2.0, "kind": "db", "signature": "SELECT"}],
    )  # fmt: skip
    ids = {
        "org_id": organization.public_id,
        "app_id": app.public_id,
        "issue_id": issue.id,
        "event_id": event.event_id,
        "release_id": release.id,
        "transaction_id": name.id,
    }
    urls = Site()
    for route in routes_walk():
        if route.name == "logout":
            continue
        urls[route.name or route.route] = (
            route.module,
            path_fill(route, {p: ids.get(p, "junk-token") for p in route.params}),
        )
    client.force_login(user)
    client.session_ids = ids
    return client, urls


class Site(dict):
    """name -> (module, url); short in hypothesis' report of a failing example."""

    def __repr__(self) -> str:
        return f"<{len(self)} pages>"


def _served(client, url: str) -> None:
    """The server still answers a plain request (no poisoned transaction, no broken state)."""
    assert client.get(url).status_code < 500, url


@pytest.mark.parametrize("name", ROUTES)
@PER_ROUTE
@given(query=queries)
def test_every_page_takes_any_query_string(site, name, query):
    client, urls = site
    _module, url = urls[name]
    response = client.get(f"{url}?{urlencode(query)}")
    assert response.status_code < 500, (url, query, response.status_code)
    _served(client, url)


@pytest.mark.parametrize("name", DASHBOARD_ROUTES)
@settings(PER_ROUTE, max_examples=20)
@given(form=forms, query=queries)
def test_every_dashboard_form_takes_any_fields(site, name, form, query):
    client, urls = site
    _module, url = urls[name]
    response = client.post(f"{url}?{urlencode(query)}", form)
    assert response.status_code < 500, (url, form, response.status_code)
    _served(client, url)


@pytest.mark.parametrize("number", [0, 2**31, 2**63, 10**40])
def test_ids_out_of_every_integer_range_are_404(site, number):
    """Every page taking a numeric id, given one past 32 or 64 bits: a 404, never an overflow."""
    from django.urls.converters import IntConverter

    client, _urls = site
    checked = 0
    for route in routes_walk():
        numeric = [name for name in route.params if isinstance(route.converters.get(name), IntConverter)]
        if not numeric:
            continue
        ids = {name: "junk" for name in route.params}
        ids.update(client.session_ids)
        for name in numeric:
            for method in ("get", "post"):
                response = getattr(client, method)(path_fill(route, {**ids, name: number}))
                assert response.status_code == 404, (route.route, name, number, response.status_code)
                checked += 1
    assert checked >= 10


@settings(FUZZ, max_examples=300)
@given(params=queries)
def test_the_performance_range_is_always_a_sane_range(params):
    """The pure range parser: whatever is asked, a range inside the bounds a page can draw."""
    from dashboards.performance import CUSTOM_MAX, time_range_parse

    now = datetime(2026, 12, 1, 12, 0, tzinfo=dt_timezone.utc)
    time_range, problem = time_range_parse(params, now=now)
    assert datetime(2000, 1, 1, tzinfo=dt_timezone.utc) <= time_range.start < time_range.end <= now + timedelta(days=2)
    assert time_range.end - time_range.start <= CUSTOM_MAX + timedelta(days=2)
    assert 0 < len(time_range.buckets) <= 24 * 60
    assert isinstance(problem, str)


def test_the_walk_covers_the_dashboard(site):
    _client, urls = site
    assert {"issue_list", "issue_detail", "performance", "transaction_detail", "release_list", "release_detail",
            "alert_settings", "api_release_list", "org_detail", "app_settings"} <= set(urls)  # fmt: skip


@settings(FUZZ, max_examples=30)
@given(page=st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=20))
def test_issue_list_pages_out_of_range_show_a_page(site, page):
    client, urls = site
    response = client.get(f"{urls['issue_list'][1]}?page={page}")
    assert response.status_code == 200
