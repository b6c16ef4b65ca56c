"""Who is sending: the app behind an intake URL and whether the bearer token is its secret.

Lookups are cached in two tiers. The first is this process's memory for
``OPBEAT_LIMITS["token_cache_seconds"]``: a warm request makes no query, and a rotated token
stops working within that time without any cross-process signalling. The second is Django's
cache (Redis in production), written on every database lookup and read only when the database
is unreachable, so the intake keeps taking events for every app it has seen while PostgreSQL is
down (the worker stores them once it is back).

Neither tier, nor the database, holds a secret token: only its SHA-256
(``accounts.models.secret_token_hash``), compared with the hash of the bearer.

This module reads the database (one query per app per process per TTL) and never writes it.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError

from accounts.models import App, secret_token_hash

from .errors import AppNotFound, DatabaseUnavailable, Forbidden, Unauthorized

logger = logging.getLogger(__name__)

# Unknown ids are cached too (so a misconfigured agent costs no query per request); past this many
# entries the process cache starts over, so random ids cannot grow it without bound.
MAX_PROCESS_ENTRIES = 100_000
# How long the second tier remembers an app: the longest database outage we ride out.
SECOND_TIER_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class AppCredentials:
    pk: int
    organization_public_id: str
    public_id: str
    secret_token_hash: str
    events_per_minute: int | None


_process_cache: dict[tuple[str, str], tuple[float, AppCredentials | None]] = {}


def _second_tier_key(organization_public_id: str, app_public_id: str) -> str:
    # Not "intake:app:", where clear tokens used to be kept: an entry left there is never read.
    return f"intake:app-hash:{organization_public_id}:{app_public_id}"


def app_credentials_cache_clear() -> None:
    _process_cache.clear()


def _credentials_from_database(organization_public_id: str, app_public_id: str) -> AppCredentials | None:
    row = (
        App.objects.filter(
            public_id=app_public_id,
            organization__public_id=organization_public_id,
        )
        .values_list("pk", "secret_token_hash", "events_per_minute")
        .first()
    )
    if row is None:
        return None
    pk, token_hash, events_per_minute = row
    return AppCredentials(pk, organization_public_id, app_public_id, token_hash, events_per_minute)


def app_credentials_get(*, organization_public_id: str, app_public_id: str) -> AppCredentials | None:
    """The app at these public ids, or None if there is none. Raises ``DatabaseUnavailable``
    if the database is down and neither cache tier knows the app."""
    key = (organization_public_id, app_public_id)
    now = time.monotonic()
    hit = _process_cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    ttl = settings.OPBEAT_LIMITS["token_cache_seconds"]
    second_key = _second_tier_key(organization_public_id, app_public_id)
    try:
        credentials = _credentials_from_database(organization_public_id, app_public_id)
    except DatabaseError as exc:
        credentials = _credentials_from_second_tier(second_key, exc)
    else:
        _second_tier_store(second_key, credentials)
    if len(_process_cache) >= MAX_PROCESS_ENTRIES:
        _process_cache.clear()
    _process_cache[key] = (now + ttl, credentials)
    return credentials


def _credentials_from_second_tier(second_key: str, db_error: DatabaseError) -> AppCredentials:
    try:
        stored = cache.get(second_key)
    except Exception as exc:  # noqa: BLE001 - the cache server being down too is the same 503
        logger.warning("intake: database and cache both unavailable: %s / %s", db_error, exc)
        stored = None
    if stored is None:
        logger.warning("intake: database unavailable and app not cached: %s", db_error)
        raise DatabaseUnavailable("the database is unavailable and this app is not cached yet; retry later")
    return AppCredentials(*stored)


def _second_tier_store(second_key: str, credentials: AppCredentials | None) -> None:
    try:
        if credentials is None:
            cache.delete(second_key)
        else:
            cache.set(
                second_key,
                (
                    credentials.pk,
                    credentials.organization_public_id,
                    credentials.public_id,
                    credentials.secret_token_hash,
                    credentials.events_per_minute,
                ),
                SECOND_TIER_SECONDS,
            )
    except Exception as exc:  # noqa: BLE001 - the second tier is insurance; losing it must not refuse events
        logger.warning("intake: could not write the app cache: %s", exc)


def bearer_token_parse(authorization: str) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None if malformed."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    # WSGI headers are latin-1 decoded; encoding back the same way gives the bytes sent.
    return token.encode("latin-1", "replace")


def app_authenticate(*, organization_public_id: str, app_public_id: str, authorization: str) -> AppCredentials:
    """The app these ids name, if ``authorization`` carries its secret token.

    Raises ``AppNotFound`` (404), ``Unauthorized`` (401: no or malformed header), ``Forbidden``
    (403: wrong token) or ``DatabaseUnavailable`` (503)."""
    credentials = app_credentials_get(organization_public_id=organization_public_id, app_public_id=app_public_id)
    if credentials is None:
        raise AppNotFound(f"no app {app_public_id!r} in organization {organization_public_id!r}")
    if not authorization:
        raise Unauthorized(
            "missing Authorization header; send 'Authorization: Bearer <secret token>'", app_pk=credentials.pk
        )
    token = bearer_token_parse(authorization)
    if token is None:
        raise Unauthorized(
            "malformed Authorization header; send 'Authorization: Bearer <secret token>'", app_pk=credentials.pk
        )
    # Constant-time, although comparing hashes already reveals nothing about the token's bytes.
    if not hmac.compare_digest(secret_token_hash(token), credentials.secret_token_hash):
        raise Forbidden(
            "wrong secret token for this app; check SECRET_TOKEN in the app settings", app_pk=credentials.pk
        )
    return credentials
