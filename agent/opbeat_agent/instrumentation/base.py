"""The machinery every instrumentation shares: a class per library that lists what it patches
(``instrument_list``, Elastic's habit), is skipped when the library is absent, never wraps
anything twice, and can be undone.

Wrappers record spans only inside a transaction (``transaction_current()`` is not None); outside
one they call straight through. A wrapper never lets its own failure reach the wrapped call.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from typing import Any, Callable, Optional

import wrapt

from ..tracing import span_current, transaction_current

logger = logging.getLogger("opbeat_agent.instrumentation")

_MARK = "_self_opbeat_agent_instrumentation"


class Instrumentation:
    """Subclasses set ``name`` and ``instrument_list`` (``(module, "Class.method")`` pairs) and
    implement ``call(module, path, wrapped, instance, args, kwargs)``."""

    name = ""
    instrument_list: tuple = ()

    def __init__(self) -> None:
        self._patches: list = []  # (parent, attribute, original), in patch order
        self._wanted = False  # instrument_when_imported was asked, and uninstrument not since
        self._hooked = False  # a post-import hook is registered (wrapt has no way to remove one)

    @property
    def instrumented(self) -> bool:
        return bool(self._patches)

    def available(self) -> bool:
        return all(importlib.util.find_spec(module.split(".")[0]) is not None for module, _ in self.instrument_list)

    def instrument(self) -> bool:
        """Wrap everything in ``instrument_list``; False (and nothing wrapped) if the library is
        missing or does not have what we patch."""
        if self._patches:
            return True
        if not self.available():
            return False
        try:
            for module_name, path in self.instrument_list:
                module = importlib.import_module(module_name)
                parent, attribute, original = wrapt.resolve_path(module, path)
                if getattr(original, _MARK, None) is not None:
                    continue  # already ours (another alias of the same function, or a second client)
                wrapper = wrapt.FunctionWrapper(original, self._wrapper(module_name, path))
                setattr(wrapper, _MARK, self.name)
                wrapt.apply_patch(parent, attribute, wrapper)
                self._patches.append((parent, attribute, original))
        except Exception:  # noqa: BLE001 - an unexpected library version: leave it untouched
            logger.debug("opbeat_agent: not instrumenting %s", self.name, exc_info=True)
            self.uninstrument()
            return False
        return True

    def instrument_when_imported(self) -> bool:
        """Instrument now if the app has imported the library, or else as soon as it does (a
        post-import hook), so that instrumenting never imports a library the app does not use
        (Django's templates in a Flask app, SQLAlchemy in a worker). True if instrumented now."""
        self._wanted = True
        module = self.instrument_list[0][0]
        if module in sys.modules:
            return self.instrument()
        if not self._hooked and self.available():
            self._hooked = True
            wrapt.register_post_import_hook(self._imported, module)
        return False

    def _imported(self, module: Any) -> None:
        if self._wanted:
            self.instrument()

    def uninstrument(self) -> None:
        self._wanted = False
        for parent, attribute, original in reversed(self._patches):
            setattr(parent, attribute, original)
        self._patches.clear()

    def _wrapper(self, module: str, path: str) -> Callable:
        def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
            if transaction_current() is None:
                return wrapped(*args, **kwargs)
            return self.call(module, path, wrapped, instance, args, kwargs)

        return wrapper

    def call(self, module: str, path: str, wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        return wrapped(*args, **kwargs)


def inside(kind_prefix: str) -> bool:
    """True when the current span is already of this kind: a query Django's execute_wrapper
    already records, an HTTP call ``requests`` already records, is not recorded twice."""
    span = span_current()
    return span is not None and span.kind.startswith(kind_prefix)


def first_arg(args: tuple, kwargs: dict, name: str) -> Optional[Any]:
    if args:
        return args[0]
    return kwargs.get(name)


def statement_text(query: Any, context: Any = None) -> str:
    """The SQL of a query object that is not a str: bytes, or a composed query that renders itself
    (``psycopg2.sql``/``psycopg.sql`` ``Composable.as_string(context)``)."""
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    as_string = getattr(query, "as_string", None)
    if as_string is not None and context is not None:
        try:
            return as_string(context)
        except Exception:  # noqa: BLE001 - a closed cursor, an unusual Composable: its str() will do
            pass
    return str(query)
