"""Celery: every task is a background transaction (kind ``task``, named by the task, result
``success``/``failure``/``retry``...), and a failing task is captured with its name, id and
arguments (scrubbed like everything else).

    from opbeat_agent.integrations.celery import register
    register(client)   # or register() to use the global client (opbeat_agent.init, Django's app)

Works in the worker's prefork children: the client's threads restart after fork.
"""

from __future__ import annotations

from typing import Any, Optional

from . import DidNotEnable

try:
    from celery import signals
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise DidNotEnable("Celery is not installed: pip install celery") from exc

from ..stacks import VarShortener

_DISPATCH = "opbeat_agent.celery"


class _Receivers:
    def __init__(self, client: Optional[Any]) -> None:
        self.client = client

    def _client(self) -> Optional[Any]:
        if self.client is not None:
            return self.client
        from .. import get_client

        return get_client()

    def prerun(self, sender: Any = None, task: Any = None, **kwargs: Any) -> None:
        client = self._client()
        if client is not None:
            client.begin_transaction("task")

    def postrun(self, sender: Any = None, task: Any = None, state: Any = None, **kwargs: Any) -> None:
        client = self._client()
        if client is not None:
            name = getattr(task, "name", None) or getattr(sender, "name", None) or "<task>"
            client.end_transaction(name, str(state or "success").lower())

    def failure(
        self,
        sender: Any = None,
        task_id: Any = None,
        exception: Optional[BaseException] = None,
        args: Any = None,
        kwargs: Any = None,
        traceback: Any = None,
        **extra: Any,
    ) -> None:
        client = self._client()
        if client is None or exception is None:
            return
        config = client.config
        shortener = VarShortener(
            max_length=config.local_var_max_length, max_items=config.local_var_max_items, scrubber=client.scrubber
        )
        task_name = getattr(sender, "name", None) or "<task>"
        client.capture_exception(
            (type(exception), exception, traceback),
            extra={
                "task": task_name,
                "task_id": str(task_id),
                "args": shortener.value(list(args or ())),
                "kwargs": shortener.value(dict(kwargs or {})),
            },
            tags={"celery_task": task_name},
        )


_receivers: Optional[_Receivers] = None


def register(client: Optional[Any] = None) -> None:
    """Connect to Celery's task signals (once; a second call only changes the client)."""
    global _receivers
    if _receivers is not None:
        _receivers.client = client
        return
    _receivers = _Receivers(client)
    signals.task_prerun.connect(_receivers.prerun, weak=False, dispatch_uid=f"{_DISPATCH}.prerun")
    signals.task_postrun.connect(_receivers.postrun, weak=False, dispatch_uid=f"{_DISPATCH}.postrun")
    signals.task_failure.connect(_receivers.failure, weak=False, dispatch_uid=f"{_DISPATCH}.failure")


def unregister() -> None:
    global _receivers
    signals.task_prerun.disconnect(dispatch_uid=f"{_DISPATCH}.prerun")
    signals.task_postrun.disconnect(dispatch_uid=f"{_DISPATCH}.postrun")
    signals.task_failure.disconnect(dispatch_uid=f"{_DISPATCH}.failure")
    _receivers = None
