"""A ``logging.Handler`` that sends log records as errors bodies.

A record with ``exc_info`` becomes an exception event; any other becomes a message event whose
``param_message`` keeps the record's template (``"Payment %s failed"``) for grouping. Records
from our own loggers (``opbeat_agent.*``) are never sent: the agent logs its own failures there,
and sending those would loop.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

# LogRecord's own attributes; anything else on a record came from ``extra=`` and goes to ``extra``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "stack"}


class OpbeatHandler(logging.Handler):
    """``logging.getLogger().addHandler(OpbeatHandler(client, level=logging.ERROR))``.

    Without a client it uses the one set by ``opbeat_agent.init`` or a framework integration.
    ``extra={"stack": True}`` on a call attaches the caller's stack to a message event.
    """

    def __init__(self, client: Any = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.client = client

    def _client(self) -> Optional[Any]:
        if self.client is not None:
            return self.client
        from . import get_client

        return get_client()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "opbeat_agent" or record.name.startswith("opbeat_agent."):
            return
        client = self._client()
        if client is None:
            return
        try:
            extra = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}
            extra.update(
                pathname=record.pathname,
                lineno=record.lineno,
                funcName=record.funcName,
                threadName=record.threadName,
                process=record.process,
            )
            level = logging.getLevelName(record.levelno).lower()
            if record.exc_info and record.exc_info[1] is not None:
                message = record.getMessage()
                extra["log_message"] = message
                client.capture_exception(record.exc_info, level=level, logger_name=record.name, extra=extra)
                return
            args = record.args
            if isinstance(args, dict):
                params: Any = args
            else:
                params = tuple(args or ())
            client.capture_message(
                str(record.msg),
                params,
                level=level,
                logger_name=record.name,
                extra=extra,
                stack=bool(getattr(record, "stack", False)),
            )
        except Exception:  # noqa: BLE001 - logging.Handler's own contract: never raise from emit
            self.handleError(record)
