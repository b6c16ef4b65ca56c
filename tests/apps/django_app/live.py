"""Drives the example Django project against a real intake (``EXAMPLE_OPBEAT`` in the settings):
three order pages (ORM queries, the cache, a custom span, a template) and the index, then flushes
and prints the transport's counters as JSON.

    EXAMPLE_OPBEAT='{"ORGANIZATION_ID": ..., "SERVERS": [...]}' \\
        DJANGO_SETTINGS_MODULE=tests.apps.django_app.settings python -m tests.apps.django_app.live
"""

from __future__ import annotations

import json

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from opbeat_agent.integrations.django import django_client  # noqa: E402


def main() -> None:
    call_command("migrate", run_syncdb=True, verbosity=0)
    user = get_user_model().objects.create_user("alice", "alice@example.org", "pw-alice-123")
    browser = Client()
    statuses = [browser.get(f"/orders/{user.pk}/").status_code for _ in range(3)]
    statuses.append(browser.get("/").status_code)
    agent = django_client()
    flushed = agent.flush(20)
    print(json.dumps({"statuses": statuses, "flushed": flushed, "stats": agent.transport.stats()}))


if __name__ == "__main__":
    main()
