"""The one rule for a time a client sends (an error's ``timestamp``, a transaction's, a release's
``deployed_at``, a commit's date): converted to UTC without overflowing, and refused, naming the
field, when it is outside what an honest client can send.

Bounds: not before 2000-01-01 (no agent of this protocol ran earlier; an earlier time is a clock
reset to zero or a forged value) and not more than a day after the server's clock (an agent's
clock a few minutes or hours off, or a time zone mix-up, still works; a year-9999 release would
otherwise sort first forever and make date arithmetic on the pages overflow). Commit dates may
be older: ``git`` records whatever the author's clock said, and imported histories go back to
1970, so they are bounded by the Unix epoch instead. The worker bounds what it stores again
(an error more than a few minutes ahead is stored at its receive time, ``processing.digest``), as
queued messages and rows written before these bounds existed are not trusted either.

Pure: no Django, no settings, no clock of its own (``now`` comes in as an argument).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .refusal import ProtocolError

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
COMMIT_EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
FUTURE_MAX = timedelta(days=1)


def moment_utc(moment: datetime) -> datetime | None:
    """``moment`` in UTC (a naive time is taken as UTC), or None when its offset pushes it past
    year 1 or year 9999 (``0001-01-01T00:00:00+23:59`` is valid ISO 8601 but has no UTC time)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None


def moment_check(moment: datetime, *, field: str, now: datetime, earliest: datetime = EARLIEST) -> datetime:
    """``moment`` in UTC if it lies within [``earliest``, ``now`` + a day]; else ``ProtocolError``
    (400) naming ``field``."""
    utc = moment_utc(moment)
    if utc is None or not earliest <= utc <= now + FUTURE_MAX:
        raise ProtocolError(
            400,
            f"`{field}` is out of range: it must be between {earliest.date().isoformat()} and a day after "
            f"the server's time ({now.replace(microsecond=0).isoformat()})",
        )
    return utc
