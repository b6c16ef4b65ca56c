"""POST .../releases/ in the original tracker's shapes and ours: 202, a message on the default
queue for the worker, which stores it idempotently; GET .../releases/latest/ for the CLI."""

from __future__ import annotations

import json
import zlib
from urllib.parse import urlencode

import pytest

from intake import queue as intake_queue
from intake.releases import RELEASES_TASK
from processing.models import Commit, CommitFile, Release, ReleaseCommit
from processing.releases import envelope_release_store

SHA1 = "a" * 40
SHA2 = "b" * 40


def _url(intake_app, suffix: str = "") -> str:
    return f"/api/v1/organizations/{intake_app.organization.public_id}/apps/{intake_app.app.public_id}/releases/{suffix}"


def _auth(intake_app) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {intake_app.token}"}


def _release_messages(broker) -> list[dict]:
    out = []
    for headers, args in broker.messages(intake_queue.DEFAULT_QUEUE):
        assert headers["task"] == RELEASES_TASK
        out.append(args[0])
    return out


RICH = {
    "version": "v2",
    "environment": "production",
    "deployed_at": "2026-01-02T03:04:05+00:00",
    "commits": [
        {
            "sha": SHA2, "author_name": "Bea", "author_email": "Bea@Example.com", "message": "Add discount codes",
            "timestamp": "2026-01-02T01:00:00+00:00",
            "files": [{"path": "orders/views.py", "status": "modified", "hunks": [[40, 0, 41, 3], [90, 2, 93, 0]]}],
        },
        {"sha": SHA1, "author_name": "Al", "author_email": "al@example.com", "message": "Start", "files": []},
    ],
}


def test_original_form_body_is_accepted_and_stored(intake_app, client, broker):
    body = urlencode({"rev": SHA1, "branch": "main", "status": "completed"})
    response = client.generic(
        "POST", _url(intake_app), body, content_type="application/x-www-form-urlencoded", **_auth(intake_app)
    )
    assert response.status_code == 202, response.content
    assert json.loads(response.content)["version"] == SHA1
    [envelope] = _release_messages(broker)
    assert envelope["kind"] == "release" and envelope["app_id"] == intake_app.app.pk
    release = envelope_release_store(envelope=envelope)
    assert (release.version, release.branch, release.status, release.environment) == (SHA1, "main", "completed", "")
    # The CLI asks where the previous deploy stopped: the rev itself, as there were no commits.
    latest = client.get(_url(intake_app, "latest/"), **_auth(intake_app))
    assert latest.status_code == 200
    assert json.loads(latest.content)["release"]["head_commit"] == SHA1


@pytest.mark.parametrize("encoding", ["json", "zlib"])
def test_original_json_and_zlib_bodies_are_accepted(intake_app, client, broker, encoding):
    raw = json.dumps({"rev": SHA2, "branch": "main", "status": "machine-completed", "machine": "web-1"}).encode()
    body = zlib.compress(raw) if encoding == "zlib" else raw
    response = client.generic("POST", _url(intake_app), body, content_type="application/octet-stream", **_auth(intake_app))
    assert response.status_code == 202, response.content
    [envelope] = _release_messages(broker)
    assert envelope["data"]["version"] == SHA2 and envelope["data"]["status"] == "machine-completed"


def test_rich_body_stores_commits_files_and_hunks_and_resending_changes_nothing(intake_app, client, broker):
    for _ in range(2):
        response = client.post(_url(intake_app), json.dumps(RICH), content_type="application/json", **_auth(intake_app))
        assert response.status_code == 202, response.content
    envelopes = _release_messages(broker)
    assert len(envelopes) == 2
    for envelope in envelopes:
        envelope_release_store(envelope=envelope)
    [release] = Release.objects.filter(app=intake_app.app)
    assert (release.version, release.environment, release.deploy_order) == ("v2", "production", 1)
    assert Commit.objects.filter(app=intake_app.app).count() == 2
    assert ReleaseCommit.objects.filter(release=release).count() == 2
    [changed] = CommitFile.objects.filter(commit__sha=SHA2)
    assert changed.path == "orders/views.py" and changed.hunks == [[40, 0, 41, 3], [90, 2, 93, 0]]
    assert Commit.objects.get(sha=SHA2).author_email == "bea@example.com"
    latest = json.loads(client.get(_url(intake_app, "latest/") + "?environment=production", **_auth(intake_app)).content)
    assert latest["release"]["version"] == "v2" and latest["release"]["head_commit"] == SHA2
    # Another environment has no release yet.
    assert json.loads(client.get(_url(intake_app, "latest/") + "?environment=staging", **_auth(intake_app)).content) == {
        "release": None
    }


@pytest.mark.parametrize(
    "body, message",
    [
        ({"branch": "main"}, "needs `version`"),
        ({"version": "v1", "commits": [{"sha": "not-a-sha"}]}, "commits[0].sha"),
        ({"version": "v1", "commits": [{"sha": SHA1, "files": [{"path": "a.py", "hunks": [[1, 2, 3]]}]}]}, "hunks"),
        ({"version": 5}, "Expected `str | null`"),
    ],
)
def test_bad_release_bodies_get_a_400_that_says_why(intake_app, client, broker, body, message):
    response = client.post(_url(intake_app), json.dumps(body), content_type="application/json", **_auth(intake_app))
    assert response.status_code == 400
    assert message in json.loads(response.content)["error"]
    assert _release_messages(broker) == []


def test_releases_need_the_apps_token(intake_app, client, broker):
    response = client.post(_url(intake_app), json.dumps(RICH), content_type="application/json", HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 403
    assert client.get(_url(intake_app, "latest/")).status_code == 401
