"""Bounds on every time a client sends and on every range a page is asked for: a release or an
event from the year 9999 (or with an offset that overflows year 1) is refused at the intake with
a 400 naming the field, a page asked for such a range says so instead of answering 500, and an
owner can delete a release that slipped in anyway."""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timedelta, timezone

import pytest
from django.urls import reverse

from accounts.models import Membership
from processing.models import Commit, Release
from processing.releases import envelope_release_store, release_store
from tests.factories import org_app_create, user_create
from tests.intake.conftest import broker, intake_app, intake_state_clean  # noqa: F401 - fixtures

FAR_FUTURE = "9999-12-31T23:59:59+00:00"
# Valid ISO 8601, but converting it to UTC lands before year 1.
OVERFLOWING_OFFSET = "0001-01-01T00:00:00+23:59"
# ... and after year 9999.
OVERFLOWING_OFFSET_HIGH = "9999-12-31T23:59:59-23:59"
BAD_MOMENTS = [FAR_FUTURE, OVERFLOWING_OFFSET, OVERFLOWING_OFFSET_HIGH, "1999-12-31T23:59:59+00:00"]
# Commit dates are whatever the author's clock said; imported histories reach back to 1970.
BAD_COMMIT_MOMENTS = [FAR_FUTURE, OVERFLOWING_OFFSET, OVERFLOWING_OFFSET_HIGH, "1969-12-31T23:59:59+00:00"]
SHA = "c" * 40


def _api(intake_app, what: str) -> str:
    return f"/api/v1/organizations/{intake_app.organization.public_id}/apps/{intake_app.app.public_id}/{what}/"


def _post(client, intake_app, what: str, body: dict, *, compress: bool = False):
    raw = json.dumps(body).encode()
    return client.generic(
        "POST", _api(intake_app, what), zlib.compress(raw) if compress else raw,
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {intake_app.token}",
    )  # fmt: skip


def _refused_naming(response, field: str) -> None:
    assert response.status_code == 400, (response.status_code, response.content)
    message = json.loads(response.content)["error"]
    assert field in message, message


def _soon(minutes: float) -> str:
    return (datetime.now(tz=timezone.utc) + timedelta(minutes=minutes)).isoformat()


# --- The intake ---------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", BAD_MOMENTS)
def test_release_with_out_of_range_deployed_at_is_refused_naming_the_field(intake_app, client, broker, moment):
    response = _post(client, intake_app, "releases", {"version": "v9", "deployed_at": moment})
    _refused_naming(response, "deployed_at")
    assert not broker.messages("default")


@pytest.mark.parametrize("moment", BAD_COMMIT_MOMENTS)
def test_release_with_out_of_range_commit_date_is_refused_naming_the_field(intake_app, client, broker, moment):
    body = {"version": "v9", "commits": [{"sha": SHA, "message": "m", "timestamp": moment}]}
    _refused_naming(_post(client, intake_app, "releases", body), "timestamp")


@pytest.mark.parametrize("moment", BAD_MOMENTS)
def test_error_with_out_of_range_timestamp_is_refused_naming_the_field(intake_app, client, broker, moment):
    response = _post(client, intake_app, "errors", {"message": "boom", "timestamp": moment}, compress=True)
    _refused_naming(response, "timestamp")
    assert not broker.envelopes()


@pytest.mark.parametrize("moment", BAD_MOMENTS)
def test_transactions_with_out_of_range_timestamps_are_refused_naming_the_field(intake_app, client, broker, moment):
    original = {"transactions": [{"transaction": "GET /", "timestamp": moment, "durations": [1.0], "result": 200}]}
    _refused_naming(_post(client, intake_app, "transactions", original), "timestamp")
    sketch = {"bins": [[100, 1]]}
    histogram = {
        "transaction": "GET /",
        "timestamp": moment,
        "count": 1,
        "sum": 2.0,
        "min": 2.0,
        "max": 2.0,
        "sketch": sketch,
    }
    _refused_naming(_post(client, intake_app, "transactions", {"histograms": [histogram]}), "timestamp")
    trace = {"transaction": "GET /", "timestamp": moment, "duration": 3.0}
    _refused_naming(_post(client, intake_app, "transactions", {"histograms": [], "traces": [trace]}), "timestamp")
    assert not broker.envelopes()


def test_an_agent_clock_a_few_minutes_off_still_works(intake_app, client, broker):
    for minutes in (-10, 10):
        moment = _soon(minutes)
        assert _post(client, intake_app, "errors", {"message": "boom", "timestamp": moment}).status_code == 202
        assert (
            _post(client, intake_app, "releases", {"version": f"v{minutes}", "deployed_at": moment}).status_code == 202
        )
        original = {"transactions": [{"transaction": "GET /", "timestamp": moment, "durations": [1.0]}]}
        assert _post(client, intake_app, "transactions", original).status_code == 202


def test_releases_without_a_time_still_take_the_receive_time(intake_app, client, broker):
    response = _post(client, intake_app, "releases", {"version": "v1", "commits": [{"sha": SHA}]})
    assert response.status_code == 202, response.content


def test_old_commit_dates_are_kept(intake_app, client, broker):
    body = {"version": "v1", "commits": [{"sha": SHA, "timestamp": "1999-12-31T23:59:59+05:00"}]}
    assert _post(client, intake_app, "releases", body).status_code == 202
    [(_headers, [envelope])] = broker.messages("default")
    assert envelope["data"]["commits"][0]["timestamp"] == "1999-12-31T18:59:59+00:00"


@pytest.mark.parametrize("moment", [*BAD_MOMENTS, "not a time"])
def test_a_queued_release_with_an_out_of_range_time_is_stored_at_its_receive_time(db, moment):
    """Messages queued before the intake bounded times (or written by hand) are bounded again."""
    _, _, app = org_app_create()
    received = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    envelope = {
        "v": 1, "kind": "release", "event_id": "e" * 32, "app_id": app.pk, "received_at": received.timestamp(),
        "data": {"version": "v1", "deployed_at": moment, "commits": [{"sha": SHA, "timestamp": moment}]},
    }  # fmt: skip
    release = envelope_release_store(envelope=envelope)
    assert release.deployed_at == received
    commit_time = Commit.objects.get(app=app, sha=SHA).timestamp
    if moment in BAD_COMMIT_MOMENTS or moment == "not a time":
        assert commit_time == received
    else:
        assert commit_time == datetime.fromisoformat(moment)


def test_a_queued_release_with_an_absurd_receive_time_is_skipped(db):
    _, _, app = org_app_create()
    envelope = {"v": 1, "kind": "release", "app_id": app.pk, "received_at": 1e300, "data": {"version": "v1"}}
    assert envelope_release_store(envelope=envelope) is None
    assert not Release.objects.filter(app=app).exists()


# --- The pages ----------------------------------------------------------------------------------


@pytest.fixture
def owner(db, client):
    user, organization, app = org_app_create()
    client.force_login(user)
    return client, organization, app


def _url(name: str, organization, app, *args) -> str:
    return reverse(f"dashboards:{name}", args=[organization.public_id, app.public_id, *args])


@pytest.mark.parametrize(
    "query",
    [
        "from=9999-12-01T00:00&to=9999-12-31T23:59",
        "from=0001-01-01T00:00&to=0001-01-02T00:00",
        "from=0001-01-01T00:00%2B23:59&to=2026-01-01T00:00",
        "from=2026-01-01T00:00&to=9999-12-31T23:59:59-23:59",
        "from=garbage&to=2026-01-01",
        "from=2026-01-01T00:00",
        "range=10000000000000000000d",
    ],
)
def test_performance_ranges_out_of_bounds_say_so(owner, query):
    client, organization, app = owner
    from processing.models import TransactionName

    name = TransactionName.objects.create(app=app, name="GET /", first_seen=datetime.now(tz=timezone.utc))
    for url in (_url("performance", organization, app), _url("transaction_detail", organization, app, name.id)):
        response = client.get(f"{url}?{query}")
        assert response.status_code < 500, (url, query, response.status_code)
        if "range=" not in query and "from=2026-01-01T00:00" != query:
            assert "range" in response.content.decode().lower()


def test_an_unknown_performance_range_says_so(owner):
    client, organization, app = owner
    response = client.get(_url("performance", organization, app) + "?range=1y")
    assert response.status_code == 200
    assert "The range must be one of 1h, 24h, 7d, 30d or a custom one" in response.content.decode()


def test_a_range_far_in_the_future_is_refused_with_a_message(owner):
    client, organization, app = owner
    response = client.get(_url("performance", organization, app) + "?from=9999-12-01T00:00&to=9999-12-31T23:59")
    assert response.status_code in (200, 400)
    assert "between" in response.content.decode()


@pytest.mark.parametrize(
    "deployed_at", [datetime.max.replace(tzinfo=timezone.utc), datetime.min.replace(tzinfo=timezone.utc)]
)
def test_a_stored_release_at_the_ends_of_time_breaks_no_page(owner, deployed_at):
    client, organization, app = owner
    release = release_store(app=app, version="v-bad", deployed_at=deployed_at, commits=[])
    release_store(app=app, version="v-good", deployed_at=datetime.now(tz=timezone.utc), commits=[])
    for url in (
        _url("release_list", organization, app),
        _url("release_detail", organization, app, release.id),
        _url("issue_list", organization, app),
        _url("performance", organization, app),
        _url("api_release_list", organization, app),
        _url("api_release_detail", organization, app, release.id),
    ):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)


def test_an_owner_deletes_a_release_after_confirming(owner):
    client, organization, app = owner
    release = release_store(
        app=app, version="v-9999", deployed_at=datetime.max.replace(tzinfo=timezone.utc), commits=[]
    )
    url = _url("release_delete", organization, app, release.id)
    # The detail page links to the confirmation page.
    assert url in client.get(_url("release_detail", organization, app, release.id)).content.decode()
    asked = client.get(url)
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "v-9999" in page and "<form" in page and 'method="post"' in page
    assert "confirm(" not in page
    assert Release.objects.filter(pk=release.pk).exists()
    done = client.post(url)
    assert done.status_code == 302
    assert not Release.objects.filter(pk=release.pk).exists()
    listing = client.get(done.url).content.decode()
    assert "Release v-9999 was deleted." in listing
    assert _url("release_detail", organization, app, release.id) not in listing


def test_a_member_who_is_not_an_owner_cannot_delete_a_release(owner, client):
    _, organization, app = owner
    release = release_store(app=app, version="v1", deployed_at=datetime.now(tz=timezone.utc), commits=[])
    member = user_create()
    Membership.objects.create(organization=organization, user=member, role=Membership.Role.MEMBER)
    client.force_login(member)
    url = _url("release_delete", organization, app, release.id)
    assert client.get(url).status_code == 403
    assert client.post(url).status_code == 403
    assert Release.objects.filter(pk=release.pk).exists()
    # ... and is not offered the link.
    assert url not in client.get(_url("release_detail", organization, app, release.id)).content.decode()


def test_another_organizations_owner_cannot_delete_a_release(owner, client):
    _, organization, app = owner
    release = release_store(app=app, version="v1", deployed_at=datetime.now(tz=timezone.utc), commits=[])
    stranger, _other_org, _other_app = org_app_create()
    client.force_login(stranger)
    url = _url("release_delete", organization, app, release.id)
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    assert Release.objects.filter(pk=release.pk).exists()


@pytest.mark.parametrize(
    "query, message",
    [
        ("page=abc", "The page must be a number"),
        ("page=-3", "The page must be a number"),
        ("page=99999999999999999999999999", "The page must be a number"),
        ("page=%C2%B2", "The page must be a number"),
        ("page=40", "There is no page 40; showing page 1."),
        ("range=1y", "The range must be one of 24h, 7d; showing 24h."),
    ],
)
def test_issue_list_parameters_out_of_range_say_so(owner, query, message):
    client, organization, app = owner
    response = client.get(_url("issue_list", organization, app) + "?" + query)
    assert response.status_code == 200
    assert message in response.content.decode()


def test_a_nul_in_a_search_or_filter_is_no_500(owner, intake_app, client):
    """PostgreSQL text cannot hold NUL and psycopg refuses it in a query parameter."""
    page_client, organization, app = owner
    for url in (
        _url("issue_list", organization, app) + "?q=a%00b",
        _url("api_release_list", organization, app) + "?environment=%00",
    ):
        assert page_client.get(url).status_code == 200, url
    latest = _api(intake_app, "releases") + "latest/?environment=%00"
    response = client.get(latest, HTTP_AUTHORIZATION=f"Bearer {intake_app.token}")
    assert response.status_code == 200
    assert json.loads(response.content) == {"release": None}
