"""Envelopes as the intake publishes them (``intake.queue.envelope_new``), from the captured bodies."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from intake.queue import envelope_new
from tests.conftest import OPBEAT_FIXTURES

ERROR_FIXTURES = sorted(OPBEAT_FIXTURES.glob("*errors.json"))


def fixture_body(name: str) -> dict:
    return json.loads((OPBEAT_FIXTURES / f"{name}_POST_errors.json").read_text())


def envelope(app, data: dict, *, event_id: str | None = None, at: datetime | None = None) -> dict:
    """An error envelope for ``app``; ``at`` sets both the client timestamp and the receive time."""
    if at is not None:
        data = {**data, "timestamp": at.isoformat()}
        received_at = at.timestamp()
    else:
        received_at = time.time()
    return envelope_new(kind="error", app_id=app.pk, received_at=received_at, data=data, event_id=event_id)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)
