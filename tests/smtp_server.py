"""A real SMTP server for tests (aiosmtpd on a free port), keeping what it received."""

from __future__ import annotations

import email
import socket
import time
from dataclasses import dataclass, field
from email.message import Message

from aiosmtpd.controller import Controller


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message
    # When it arrived (time.time()), for tests that hold mail to a deadline.
    at: float = field(default_factory=time.time)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_payload(decode=True)
        return part.decode("utf-8", "replace") if isinstance(part, bytes) else str(self.message.get_payload())


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._handler = _Handler()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> "SmtpServer":
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()

    @property
    def received(self) -> list[Received]:
        return list(self._handler.received)

    def to(self, address: str) -> list[Received]:
        return [mail for mail in self._handler.received if address in mail.recipients]

    def wait_for(self, address: str, *, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"no email to {address} within {timeout} s; got {[m.recipients for m in self.received]}")
