"""Auto-instrumentation: spans for the libraries an app uses, without changes to its code.

One class per library (``instrument_list`` says what it patches); each is skipped when its
library is absent, never wraps twice, and ``uninstrument_all()`` undoes everything. The client
calls ``instrument_all()`` when transactions are on and ``instrument`` is not turned off: a
library the app has already imported is instrumented at once, any other when the app imports it
(wrapt's post-import hooks), so the agent never imports a library the app does not use.
Importing this package imports wrapt, never the instrumented libraries.
"""

from __future__ import annotations

from .base import Instrumentation
from .dbapi import Psycopg2, SQLite
from .http import HTTPClient, Requests
from .httpx import HTTPX
from .other import DjangoCache, DjangoTemplates, Jinja2, Redis
from .psycopg3 import Psycopg
from .sqlalchemy import SQLAlchemy
from .urllib3 import Urllib3

INSTRUMENTATIONS: list = [
    SQLite(), Psycopg2(), Psycopg(), SQLAlchemy(), HTTPClient(), Urllib3(), Requests(), HTTPX(), Redis(),
    DjangoTemplates(), DjangoCache(), Jinja2(),
]


def instrument_all(*, skip: tuple = ()) -> list:
    """Instrument every library not named in ``skip``: those the app has imported now, the others
    when it imports them. Returns the names instrumented now."""
    done = []
    for instrumentation in INSTRUMENTATIONS:
        if instrumentation.name in skip:
            continue
        if instrumentation.instrument_when_imported():
            done.append(instrumentation.name)
    return done


def uninstrument_all() -> None:
    for instrumentation in INSTRUMENTATIONS:
        instrumentation.uninstrument()


def instrumented() -> list:
    return [i.name for i in INSTRUMENTATIONS if i.instrumented]


__all__ = ["INSTRUMENTATIONS", "Instrumentation", "instrument_all", "instrumented", "uninstrument_all"]
