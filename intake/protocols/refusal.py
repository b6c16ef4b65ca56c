"""The one exception every wire format raises for a body it cannot accept (pure, like them)."""

from __future__ import annotations


class ProtocolError(Exception):
    """The body cannot be accepted. ``status`` is the HTTP status to answer (400, 413, 415) and
    the message says what is wrong, naming the field when there is one."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def reason(self) -> str:
        # The rejection counter's vocabulary (shown on the dashboard as "dropped: too large 12").
        return "too_large" if self.status == 413 else "invalid"
