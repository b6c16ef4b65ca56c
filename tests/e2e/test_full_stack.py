"""From sign-up to a grouped stack trace, through the real stack.

Production shape: gunicorn serving ``opbeat_server.wsgi`` and a Celery worker, on the real
PostgreSQL, RabbitMQ and Redis, driven by a headless Chromium that signs up and creates an app
through the UI; the original opbeat module's captured bodies are posted to the intake and their
``Location`` opened in the browser. Embedded shape: the same flow, without a browser, against
``manage.py opbeat_run`` on SQLite and its SQLite queue.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import requests

from . import stack

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple 42"


def _location_check(location: str, *, base_url: str, organization_id: str, app_id: str, **_credentials) -> None:
    assert re.fullmatch(
        rf"{re.escape(base_url)}/orgs/{organization_id}/apps/{app_id}/events/[0-9a-f-]{{32,36}}/", location
    ), location


def test_signup_in_browser_then_opbeat_bodies_show_as_grouped_issues(chromium: str, production_stack):
    from playwright.sync_api import sync_playwright

    base_url = production_stack.base_url
    logs = production_stack.logs
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=stack.CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(30_000)

        # Sign up through the UI: the sign-up creates the organization and lands on it.
        page.goto(f"{base_url}/signup/")
        page.fill('input[name="email"]', f"e2e-{uuid.uuid4().hex[:8]}@example.com")
        page.fill('input[name="password"]', PASSWORD)
        page.fill('input[name="organization_name"]', "Acme <E2E>")
        page.get_by_role("button", name="Sign up").click()
        page.wait_for_url(re.compile(r"/orgs/[0-9a-f]{16}/$"))
        assert "Acme <E2E>" in page.inner_text("body")

        # Create an app through the UI and read its credentials off the page that answers: the
        # only one that shows the secret token.
        page.get_by_role("link", name="New app").first.click()
        page.fill('input[name="name"]', "shop")
        page.get_by_role("button", name="Create app").click()
        page.wait_for_selector("#secret-token")
        assert "it will not be shown again" in page.inner_text("body")
        credentials = {
            "organization_id": page.inner_text("#organization-id").strip(),
            "app_id": page.inner_text("#app-id").strip(),
            "secret_token": page.inner_text("#secret-token").strip(),
        }
        assert len(credentials["secret_token"]) >= 20

        # The agent's bodies, byte for byte, with its headers; one of them twice.
        captured = stack.captured_errors()
        posts = [*captured, captured[0]]
        locations = []
        for error in posts:
            response = stack.captured_error_post(base_url, error, **credentials)
            assert response.status_code == 202, f"{error.name}: {response.status_code} {response.text}"
            location = response.headers["Location"]
            _location_check(location, base_url=base_url, **credentials)
            locations.append(location)
        assert len(set(locations)) == len(posts)

        # Each Location shows its event on its issue, once the worker has digested it.
        issue_of = []
        for error, location in zip(posts, locations):
            page.goto(location)

            def on_issue_page() -> re.Match | None:
                match = stack.ISSUE_EVENT_PATH.search(page.url.split("?")[0])
                if match is None:
                    page.wait_for_timeout(1000)
                    page.goto(location)
                return match

            match = stack.wait_until(
                on_issue_page, timeout=stack.DIGEST_TIMEOUT, what=f"{error.name} on its issue page", on_timeout=logs
            )
            issue_of.append(int(match.group(1)))
            visible = page.inner_text("body")
            whole = page.text_content("body") or ""
            headline = error.expected_texts()[:2] if error.decoded.get("exception") else error.expected_texts()
            for text in headline:
                assert text in visible, f"{error.name}: {text!r} is not shown on {page.url}"
            for text in error.expected_texts():
                # Frames may be folded (<details>), so the stack trace is checked in the whole page.
                assert text in whole, f"{error.name}: {text!r} is not on {page.url}"

        # Grouping: the same body twice is one issue; a KeyError and a ZeroDivisionError are two.
        assert issue_of[0] == issue_of[-1]
        kinds = {e.decoded.get("exception", {}).get("type"): i for e, i in zip(posts, issue_of)}
        assert kinds["KeyError"] != kinds["ZeroDivisionError"]

        page.goto(f"{base_url}/orgs/{credentials['organization_id']}/apps/{credentials['app_id']}/")
        issue_list = page.inner_text("body")
        assert "ZeroDivisionError" in issue_list and "KeyError" in issue_list
        browser.close()


def test_embedded_opbeat_run_from_signup_to_stack_trace(var_dir: Path, log_dir: Path):
    port = stack.port_free()
    base_url = f"http://127.0.0.1:{port}"
    runner = stack.opbeat_run_start(port=port, env=stack.child_env(var_dir), log_dir=log_dir)
    try:
        banner = f"Opbeat Server is running at {base_url}/"

        def started() -> bool:
            runner.assert_running()
            return banner in runner.log_path.read_text(errors="replace")

        stack.wait_until(started, timeout=stack.START_TIMEOUT, what="opbeat_run's banner", on_timeout=runner.log_tail)
        # Embedded means SQLite and the on-disk queue under var/: no server was configured.
        assert (var_dir / "opbeat.sqlite3").exists()
        assert (var_dir / "queue").is_dir()

        session = requests.Session()
        signed_up = stack.form_post(
            session,
            f"{base_url}/signup/",
            {"email": "embedded@example.com", "password": PASSWORD, "organization_name": "Embedded"},
        )
        assert signed_up.status_code == 200
        org_match = re.search(r"/orgs/([0-9a-f]{16})/$", signed_up.url)
        assert org_match, f"sign-up did not land on the organization: {signed_up.url}"
        created = stack.form_post(session, f"{base_url}/orgs/{org_match.group(1)}/apps/new/", {"name": "shop"})
        assert created.status_code == 200, created.url
        credentials = stack.credentials_read(created.text)

        for error in stack.captured_errors():
            response = stack.captured_error_post(base_url, error, **credentials)
            assert response.status_code == 202, f"{error.name}: {response.status_code} {response.text}"
            location = response.headers["Location"]
            _location_check(location, base_url=base_url, **credentials)

            def digested() -> requests.Response | None:
                runner.assert_running()
                page = session.get(location, timeout=30)
                return page if stack.ISSUE_EVENT_PATH.search(page.url) else None

            page = stack.wait_until(
                digested, timeout=stack.DIGEST_TIMEOUT, what=f"{error.name} on its issue page", on_timeout=runner.log_tail
            )
            text = stack.page_text(page.text)
            for expected in error.expected_texts():
                assert expected in text, f"{error.name}: {expected!r} is not on {page.url}"

        # SIGTERM stops the runner cleanly, and it takes its children with it.
        children = stack.process_children(runner.popen.pid)
        assert len(children) == 2, children
        runner.popen.terminate()
        assert runner.popen.wait(timeout=60) == 0, runner.log_tail()
        assert not [pid for pid in children if stack.process_alive(pid)]
        assert not stack.port_listening(port)
        assert "Opbeat Server stopped." in runner.log_path.read_text()
    finally:
        runner.stop()


def test_flask_app_with_the_agent_to_its_issue_page(production_stack):
    """A real Flask app with our agent (tests/apps/flask_app.py) fails a request; its error reaches
    the issue page through gunicorn, RabbitMQ, the worker and PostgreSQL, scrubbed."""
    pytest.importorskip("flask")
    import opbeat_agent

    from tests.apps.flask_app import create_app

    base_url = production_stack.base_url
    email = f"agent-{uuid.uuid4().hex[:8]}@example.com"
    credentials = json.loads(
        stack.manage(
            "opbeat_create_app", "--email", email, "--password", PASSWORD, "--org", "Agent", "--app", "flask-shop",
            env=production_stack.env,
        ).strip().splitlines()[-1]
    )  # fmt: skip

    opbeat_agent.set_client(None)
    flask_app = create_app(
        ORGANIZATION_ID=credentials["organization_id"],
        APP_ID=credentials["app_id"],
        SECRET_TOKEN=credentials["secret_token"],
        SERVERS=[base_url],
        # Errors only, and no patching of libraries inside the test process.
        TRANSACTIONS_ENABLED=False,
        INSTRUMENT=False,
    )
    client = flask_app.extensions["opbeat_agent"].client
    try:
        assert flask_app.test_client().get("/error?password=pw").status_code == 500
        assert client.flush(30)
        assert client.transport.last_status == 202, client.transport.stats()
        location = client.transport.last_location
    finally:
        client.close(timeout=0)
        opbeat_agent.set_client(None)
    _location_check(location, base_url=base_url, **credentials)

    session = requests.Session()
    logged_in = stack.form_post(session, f"{base_url}/login/", {"username": email, "password": PASSWORD})
    assert logged_in.status_code == 200 and "/login/" not in logged_in.url, logged_in.url

    def digested() -> requests.Response | None:
        production_stack.assert_running()
        page = session.get(location, timeout=30)
        return page if stack.ISSUE_EVENT_PATH.search(page.url) else None

    page = stack.wait_until(
        digested, timeout=stack.DIGEST_TIMEOUT, what="the Flask error on its issue page", on_timeout=production_stack.logs
    )
    text = stack.page_text(page.text)
    for expected in ("ZeroDivisionError", "division by zero", "return str(1 / divisor)", "secret_password"):
        assert expected in text, f"{expected!r} is not on {page.url}"
    # The agent scrubbed the local variable and the query string before sending. ("hunter2" itself is
    # on the page legitimately: it is in the source lines around the frame.)
    assert re.search(r"secret_password\s*\*{8}", text), "the local variable secret_password is not shown masked"
    assert "password=********" in text
    # Nowhere on the page, including the locals of Flask's own frames (environ, the Request repr).
    assert "password=pw" not in text


def test_original_module_transactions_show_on_the_performance_page(chromium: str, production_stack):
    """The original module's transactions bodies (one a minute per process) reach the app's
    Performance page through the intake, RabbitMQ, the worker and PostgreSQL."""
    from playwright.sync_api import sync_playwright

    base_url = production_stack.base_url
    email = f"perf-{uuid.uuid4().hex[:8]}@example.com"
    credentials = json.loads(
        stack.manage(
            "opbeat_create_app", "--email", email, "--password", PASSWORD, "--org", "Perf", "--app", "shop",
            env=production_stack.env,
        ).strip().splitlines()[-1]
    )  # fmt: skip
    names = set()
    for body in stack.captured_transactions_now():
        response = stack.captured_transactions_post(base_url, body, **credentials)
        assert response.status_code == 202, f"{body.name}: {response.status_code} {response.text}"
        names |= {item["transaction"] for item in body.decoded["transactions"]}
    assert {"GET /work", "GET bench.views.work", "demo-task"} <= names

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=stack.CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{base_url}/login/")
        page.fill('input[name="username"]', email)
        page.fill('input[name="password"]', PASSWORD)
        page.locator('form button[type="submit"]').last.click()
        page.wait_for_url(lambda url: "/login/" not in url)

        performance = f"{base_url}/orgs/{credentials['organization_id']}/apps/{credentials['app_id']}/performance/"

        def all_names_shown() -> bool:
            production_stack.assert_running()
            page.goto(performance)
            shown = page.inner_text("body")
            return all(name in shown for name in names)

        stack.wait_until(
            all_names_shown,
            timeout=stack.DIGEST_TIMEOUT,
            what=f"{sorted(names)} on the Performance page",
            on_timeout=lambda: page.inner_text("body")[:3000] + "\n" + production_stack.logs(),
        )
        browser.close()
