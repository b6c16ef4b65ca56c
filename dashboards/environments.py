"""The environment filter of an app's pages (issues, an issue, performance, releases).

``?environment=NAME`` shows one environment; ``?environment=`` (empty) shows all of them. The
member's last choice is remembered per app (``EnvironmentChoice``): a page opened without the
parameter uses it, and choosing "All" forgets it. Every function takes an ``App`` the caller
resolved with ``accounts.selectors.app_for_member``, so another organization's app is a 404
before anything here is read or written.

Costs a page one query to read the choice and one to list the names; a changed choice one more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from accounts.models import App, User
from processing.models import Environment

from .models import EnvironmentChoice
from .selectors import text_param

PARAM = "environment"
# As stored by the worker (``processing.digest``): longer names are cut there too.
NAME_MAX = 100


@dataclass
class EnvironmentFilter:
    current: str  # "" is all environments
    names: list[str]  # the app's environments, for the selector
    # (label, query string, is the current one): "All" first.
    links: list[tuple[str, str, bool]] = field(default_factory=list)


def app_environments(*, app: App) -> list[str]:
    return list(
        Environment.objects.filter(
            app=app,
        )
        .order_by("name")
        .values_list("name", flat=True)
    )


def environment_choice_get(*, user: User, app: App) -> str:
    return (
        EnvironmentChoice.objects.filter(
            app=app,
            user=user,
        )
        .values_list("environment", flat=True)
        .first()
        or ""
    )


def environment_choice_set(*, user: User, app: App, environment: str) -> None:
    """Remember ``environment`` for this member and app; "" (all) forgets the choice."""
    if not environment:
        EnvironmentChoice.objects.filter(app=app, user=user).delete()
        return
    EnvironmentChoice.objects.bulk_create(
        [EnvironmentChoice(app=app, user=user, environment=environment)],
        update_conflicts=True,
        unique_fields=["user", "app"],
        update_fields=["environment"],
    )


def environment_filter_resolve(*, user: User, app: App, params, keep: dict | None = None) -> EnvironmentFilter:
    """The environment the page shows (the parameter, else the remembered choice), remembering a
    new choice, and the selector's links, each keeping ``keep`` (the page's other parameters)."""
    remembered = environment_choice_get(user=user, app=app)
    if PARAM in params:
        current = text_param(params.get(PARAM, "").strip(), limit=NAME_MAX)
        if current != remembered:
            environment_choice_set(user=user, app=app, environment=current)
    else:
        current = remembered
    names = app_environments(app=app)
    if current and current not in names:
        # Chosen before its first event arrived, or typed: shown (empty) rather than dropped.
        names = sorted([*names, current])
    base = {key: value for key, value in (keep or {}).items() if value not in ("", None)}
    links = [("All", "?" + urlencode({**base, PARAM: ""}), current == "")]
    links += [(name, "?" + urlencode({**base, PARAM: name}), name == current) for name in names]
    return EnvironmentFilter(current=current, names=names, links=links)
