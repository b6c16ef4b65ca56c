"""The example Flask app with opbeat-agent, sending to the real intake (Django's live server):
after the worker's rollup, the pages show the numbers the agent sent, and the slowest trace's
waterfall with its SQL."""

from __future__ import annotations

import pytest

pytest.importorskip("flask")

import opbeat_agent  # noqa: E402
from django.urls import reverse  # noqa: E402

from intake.auth import app_credentials_cache_clear  # noqa: E402
from processing.models import TransactionName  # noqa: E402
from processing.rollups import transactions_digest  # noqa: E402
from tests.apps.flask_app import create_app  # noqa: E402
from tests.factories import org_app_token_create  # noqa: E402
from tests.performance.conftest import exact_quantile, figure  # noqa: E402


def test_example_app_numbers_reach_the_pages(live_server, transactional_db, broker, client):
    from opbeat_agent.sketch import DurationSketch

    app_credentials_cache_clear()
    owner, organization, app, token = org_app_token_create()
    opbeat_agent.set_client(None)
    flask_app = create_app(
        ORGANIZATION_ID=organization.public_id, APP_ID=app.public_id, SECRET_TOKEN=token,
        SERVERS=[live_server.url], INSTRUMENT=True, DISABLED_INSTRUMENTATIONS=["http.client", "urllib3", "requests"],
    )  # fmt: skip
    agent = flask_app.extensions["opbeat_agent"].client
    try:
        browser = flask_app.test_client()
        for limit in range(30):
            assert browser.get(f"/report/{limit % 4}").status_code == 200
        assert agent.flush(20)
        assert agent.transport.stats().get("transactions_sent") == 1, agent.transport.stats()
    finally:
        agent.close(timeout=0)
        opbeat_agent.set_client(None)

    envelopes = broker.envelopes()
    assert transactions_digest(envelopes=envelopes).transactions == 30
    # What the agent sent for the report endpoint, read back with the agent's own sketch code.
    groups = [g for e in envelopes for g in e["data"]["groups"] if g["transaction"] == "GET /report/<int:limit>"]
    count, total = sum(g["count"] for g in groups), sum(g["sum"] for g in groups)
    sent = DurationSketch(0.01)
    for group in groups:
        sent.merge(DurationSketch.from_dict(
            {"relative_accuracy": 0.01, "zero_count": group["zero_count"], "bins": group["bins"], "values": group.get("values")},
            count=group["count"], total=group["sum"], minimum=group["min"], maximum=group["max"],
        ))  # fmt: skip

    client.force_login(owner)
    name = TransactionName.objects.get(app=app, name="GET /report/<int:limit>")
    url = reverse("dashboards:transaction_detail", args=[organization.public_id, app.public_id, name.id])
    html = client.get(url, {"range": "1h"}).content.decode()
    assert figure(html, "total-count") == count == 30
    assert abs(figure(html, "total-avg") - total / count) <= max(0.01 * total / count, 0.0006)
    # A group of a few requests carries its durations: the page shows their exact nearest-rank
    # percentiles (to the microsecond it prints), as the agent's sketch reads them too.
    values = [value for group in groups for value in group["values"]]
    assert len(values) == 30
    for q, css in ((0.5, "total-p50"), (0.95, "total-p95"), (0.99, "total-p99")):
        assert abs(figure(html, css) - exact_quantile(values, q)) <= 0.0006, css
        assert abs(figure(html, css) - sent.quantile(q)) <= 0.0006, css
    assert "SELECT FROM orders" in html and "SELECT id, total FROM orders WHERE total &gt; ? LIMIT ?" in html
    assert "template.jinja2" in html

    overview = client.get(reverse("dashboards:performance", args=[organization.public_id, app.public_id]), {"range": "1h"})
    assert "GET /report/&lt;int:limit&gt;" in overview.content.decode()
