"""Stack frames as the Intake API v1 carries them: oldest first, each with 3 lines before and 2
after the current one, local variables as capped JSON-safe values, and whether it is the app's
own code (``in_app``) or a library's.

A local's ``repr`` runs user code: every call here is guarded, so a broken ``__repr__`` turns into
a placeholder string and never into an exception in the host app.
"""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
from types import FrameType, TracebackType
from typing import Any, Iterator, Optional

from .scrub import MASK

# Our own frames are never the app's, and neither are the interpreter's standard library's.
_STDLIB_DIRS = tuple(
    sorted(
        {
            os.path.realpath(p) + os.sep
            for p in (sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib"))
            if p
        }
    )
)
_LIBRARY_MARKERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def frame_in_app(*, module: str, abs_path: str, include: list, exclude: list) -> bool:
    """The app's own code? ``include``/``exclude`` are module prefixes from the config; without a
    match, anything installed as a library or part of the standard library is not in-app."""

    def matches(prefixes: list) -> bool:
        return any(module == p or module.startswith(p.rstrip(".") + ".") for p in prefixes)

    if module == "opbeat_agent" or module.startswith("opbeat_agent."):
        return False
    # site-packages is never in-app, even if listed: the rule that makes grouping stable across
    # library upgrades.
    if any(marker in abs_path for marker in _LIBRARY_MARKERS):
        return False
    if matches(exclude):
        return False
    if matches(include):
        return True
    if not abs_path or abs_path.startswith("<"):
        return False
    real = os.path.realpath(abs_path)
    return not any(real.startswith(d) for d in _STDLIB_DIRS)


def _relative_filename(abs_path: str, module: str) -> str:
    """``django/core/handlers/base.py`` for module ``django.core.handlers.base``: the path below the
    sys.path entry, which stays the same across machines and virtualenvs (the original's form)."""
    if not abs_path or not module or module == "__main__":
        return os.path.basename(abs_path) if abs_path else ""
    depth = module.count(".") + 1
    if os.path.basename(abs_path).startswith("__init__."):
        depth += 1
    parts = abs_path.replace("\\", "/").split("/")
    return "/".join(parts[-depth:])


def _context(abs_path: str, lineno: int, module_globals: Any, lines: int) -> tuple:
    try:
        source = linecache.getlines(abs_path, module_globals if isinstance(module_globals, dict) else None)
    except Exception:  # noqa: BLE001 - a loader's get_source can raise anything; no context then
        return None, [], []
    if not source or lineno < 1 or lineno > len(source):
        return None, [], []
    index = lineno - 1
    strip = lambda line: line.rstrip("\r\n")  # noqa: E731
    pre = [strip(x) for x in source[max(0, index - lines) : index]]
    post = [strip(x) for x in source[index + 1 : index + 1 + max(0, lines - 1)]]
    return strip(source[index]), pre, post


class VarShortener:
    """Local variables as JSON-safe values: containers kept as containers (so scrubbing can see
    their keys), up to ``max_items`` each and a few levels deep; everything else as a ``repr`` cut
    at ``max_length`` characters.

    With a ``scrubber``, secrets are masked here, before anything is cut or turned into a repr: a
    value under a sensitive key is never repr'd at all, a container past ``max_depth`` is scrubbed
    (to any depth) before its repr is taken, and a repr or a string is scrubbed whole and only
    then cut, so a secret straddling the cut cannot leave half of itself behind."""

    # A repr is scrubbed on this many characters at most before being cut to max_length: enough
    # for any secret that ends within the part that is kept.
    _SCRUB_CHARS = 10_000

    def __init__(self, *, max_length: int, max_items: int, max_depth: int = 3, scrubber: Any = None) -> None:
        self.max_length = max_length
        self.max_items = max_items
        self.max_depth = max_depth
        self.scrubber = scrubber if scrubber is not None and scrubber.enabled else None

    def _cut(self, text: str) -> str:
        if self.scrubber is not None:
            text = self.scrubber.text(text[: self._SCRUB_CHARS])
        return text if len(text) <= self.max_length else text[: self.max_length - 3] + "..."

    def _repr(self, value: Any) -> str:
        try:
            return self._cut(repr(value))
        except Exception as exc:  # noqa: BLE001 - user __repr__ may raise anything
            return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"

    def value(self, value: Any, depth: int = 0) -> Any:
        # type(), never isinstance(): isinstance reads __class__, which a lazy proxy (Django's
        # SimpleLazyObject, e.g. request.user) answers by evaluating itself.
        kind = type(value)
        if value is None or kind is bool:
            return value
        if kind is int:
            return value if abs(value) <= 2**53 else str(value)
        if kind is float:
            return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
        if kind is str:
            return self._cut(value)
        if kind is bytes:
            return self._cut(repr(value))
        if depth >= self.max_depth:
            if self.scrubber is not None and kind in (dict, list, tuple, set, frozenset):
                try:
                    value = self.scrubber.value(value, max_items=self.max_items)
                except Exception as exc:  # noqa: BLE001 - a container changed size while we walked it
                    return f"<unrepresentable {kind.__name__}: {type(exc).__name__}>"
            return self._repr(value)
        scrubber = self.scrubber
        if scrubber is not None and kind in (list, tuple) and scrubber.digits_are_card(value):
            return MASK
        # Exact types only: a subclass of dict may have a __getitem__ or items() with side effects.
        if kind is dict:
            out = {}
            for index, (k, v) in enumerate(value.items()):
                if index >= self.max_items:
                    out["..."] = f"{len(value) - self.max_items} more"
                    break
                key = k if type(k) is str else self._repr(k)
                out[key] = self._item(key, v, depth)
            return out
        if kind in (list, tuple, set, frozenset):
            items = list(value)[: self.max_items + 1] if kind in (set, frozenset) else value
            out_list = []
            for v in items[: self.max_items]:
                if (
                    scrubber is not None
                    and type(v) in (list, tuple)
                    and len(v) == 2
                    and type(v[0]) is str
                    and scrubber.key_is_sensitive(v[0])
                ):
                    v = [v[0], self._item(v[0], v[1], depth + 1)]  # ("Authorization", "Bearer ..."): a header pair
                out_list.append(self.value(v, depth + 1))
            if len(value) > self.max_items:
                out_list.append(f"... {len(value) - self.max_items} more")
            return out_list
        return self._repr(value)

    def _item(self, key: str, value: Any, depth: int) -> Any:
        """The value under ``key``; under a sensitive key it is masked without ever being repr'd
        (which would run user code for nothing)."""
        if self.scrubber is None or not self.scrubber.key_is_sensitive(key):
            return self.value(value, depth + 1)
        if "cookie" in key.lower():
            return self.scrubber.masked(key, self.value(value, depth + 1))
        return self.scrubber.masked(key, value if type(value) in (type(None), bool, str) else MASK)

    def frame_vars(self, f_locals: dict) -> dict:
        try:
            items = list(f_locals.items())
        except Exception:  # noqa: BLE001 - f_locals of an exotic frame; no vars then
            return {}
        return {str(name): self._item(str(name), val, -1) for name, val in items}


def frame_dict(
    *,
    frame: FrameType,
    lineno: int,
    config: Any,
    shortener: Optional[VarShortener],
) -> dict:
    code = frame.f_code
    abs_path = code.co_filename or ""
    f_globals = frame.f_globals
    module = f_globals.get("__name__", "") if isinstance(f_globals, dict) else ""
    module = module if isinstance(module, str) else ""
    context_line, pre, post = _context(abs_path, lineno, f_globals, config.context_lines)
    in_app = frame_in_app(
        module=module, abs_path=abs_path, include=config.include_paths, exclude=config.exclude_paths
    )
    out = {
        "abs_path": abs_path,
        "filename": _relative_filename(abs_path, module),
        "module": module,
        "function": code.co_name,
        "lineno": lineno,
        "in_app": in_app,
        "library_frame": not in_app,
    }
    if context_line is not None:
        out.update(pre_context=pre, context_line=context_line, post_context=post)
    if shortener is not None:
        out["vars"] = shortener.frame_vars(frame.f_locals)
    return out


def _traceback_entries(tb: Optional[TracebackType]) -> Iterator[tuple]:
    while tb is not None:
        if not tb.tb_frame.f_locals.get("__traceback_hide__"):
            yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


def _cap(entries: list, max_frames: int) -> list:
    # Keep both ends of a deep stack (a RecursionError has ~1000 frames): the entry point says
    # where the work came from, the newest frames say what failed.
    if len(entries) <= max_frames:
        return entries
    head = max_frames // 5
    return entries[:head] + entries[len(entries) - (max_frames - head) :]


def _shortener(config: Any, scrubber: Any) -> Optional[VarShortener]:
    if not config.collect_local_variables:
        return None
    return VarShortener(max_length=config.local_var_max_length, max_items=config.local_var_max_items, scrubber=scrubber)


def traceback_frames(*, tb: Optional[TracebackType], config: Any, scrubber: Any = None) -> list:
    """The frames of a traceback, oldest first; locals scrubbed by ``scrubber`` as they are read."""
    entries = _cap(list(_traceback_entries(tb)), config.max_frames)
    shortener = _shortener(config, scrubber)
    return [frame_dict(frame=f, lineno=n, config=config, shortener=shortener) for f, n in entries]


def current_stack_frames(*, config: Any, skip_modules: tuple = ("opbeat_agent", "logging"), scrubber: Any = None) -> list:
    """The calling code's stack, oldest first, without our own and the logging module's frames."""
    entries = []
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "") or ""
        if not any(module == m or module.startswith(m + ".") for m in skip_modules):
            entries.append((frame, frame.f_lineno))
        frame = frame.f_back
    entries.reverse()
    shortener = _shortener(config, scrubber)
    return [
        frame_dict(frame=f, lineno=n, config=config, shortener=shortener)
        for f, n in _cap(entries, config.max_frames)
    ]


def culprit_from_frames(frames: list) -> str:
    """``module.function`` of the newest in-app frame (of the newest frame if none is in-app)."""
    for frame in reversed(frames):
        if frame.get("in_app"):
            return f"{frame['module']}.{frame['function']}"
    if frames:
        return f"{frames[-1]['module']}.{frames[-1]['function']}"
    return ""
