"""Performance tests: send transactions bodies through the real intake view, read what landed in
the broker (RabbitMQ under BROKER_URL=amqp, else the on-disk queue), roll them up with the worker's
service, and read the numbers off the dashboard pages."""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
from django.urls import reverse

from processing.rollups import transactions_digest
from tests.factories import org_app_token_create
# The intake's autouse fixture (fresh token cache, quota and rejection counters per test) applies
# here too: importing it into this conftest registers it.
from tests.intake.conftest import BrokerReader, broker, intake_state_clean  # noqa: F401

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "opbeat"
TRANSACTION_FIXTURES = sorted(FIXTURES.glob("*_POST_transactions.zlib"))


@dataclass
class PerfApp:
    user: object
    organization: object
    app: object
    token: str  # the app's secret token in clear (the database keeps its hash)
    client: object
    broker: BrokerReader

    @property
    def intake_url(self) -> str:
        return f"/api/v1/organizations/{self.organization.public_id}/apps/{self.app.public_id}/transactions/"

    def post(self, body: bytes, *, headers: dict[str, str] | None = None, token: str | None = None):
        meta = {"HTTP_AUTHORIZATION": f"Bearer {self.token if token is None else token}"}
        for key, value in (headers or {}).items():
            meta["HTTP_" + key.upper().replace("-", "_")] = value
        return self.client.generic("POST", self.intake_url, body, content_type="application/octet-stream", **meta)

    def post_original(self, body: dict):
        return self.post(zlib.compress(json.dumps(body).encode()))

    def post_agent(self, body: dict):
        import gzip

        return self.post(gzip.compress(json.dumps(body).encode()), headers={"Content-Encoding": "gzip"})

    def work(self):
        """What the worker does with the queued envelopes."""
        envelopes = self.broker.envelopes()
        return transactions_digest(envelopes=envelopes), envelopes

    def page(self, name: str = "performance", *args, **params) -> str:
        url = reverse(f"dashboards:{name}", args=[self.organization.public_id, self.app.public_id, *args])
        response = self.client.get(url, params)
        assert response.status_code == 200, response.status_code
        return response.content.decode()


@pytest.fixture
def perf(db, client, broker) -> PerfApp:
    user, organization, app, token = org_app_token_create()
    client.force_login(user)
    return PerfApp(user=user, organization=organization, app=app, token=token, client=client, broker=broker)


def figure(html: str, css_class: str) -> float:
    """The number shown in ``<dd class="css_class">``."""
    match = re.search(rf'<dd class="{css_class}">([0-9,.]+)', html)
    assert match, f"no {css_class} on the page"
    return float(match.group(1).replace(",", ""))


def exact_quantile(values: list[float], q: float) -> float:
    """Nearest rank: the value at rank ceil(q * n), 1-based (q as the decimal it is written as)."""
    ordered = sorted(values)
    rank = math.ceil(Fraction(str(q)) * len(ordered))
    return ordered[max(rank, 1) - 1]
