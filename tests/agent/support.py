"""A stand-in intake for the agent's tests: a real HTTP server (stdlib, in a thread) that records
what the agent POSTs and answers as scripted: 202 with a Location, 500, 429/503 with
Retry-After, or "slow" (the answer is held until the test releases it, at most 5 s).

It is not a mock of our code: the agent's real transport talks HTTP to it over a socket.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


@dataclass
class Answer:
    status: int = 202
    headers: dict = field(default_factory=dict)
    # Hold the answer until IntakeDouble.release() (or 5 s): the slow intake.
    hold: bool = False


@dataclass
class Received:
    path: str
    headers: dict
    body: dict
    status: int
    at: float  # time.monotonic() when the request arrived


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class IntakeDouble:
    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self.script: list[Answer] = []
        self.in_flight = 0
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # --- control ------------------------------------------------------------------------------

    def start(self) -> "IntakeDouble":
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                double._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def release(self) -> None:
        self._released.set()

    def answer(self, *answers: Answer) -> None:
        """The next requests get these answers, in order; then 202s."""
        with self._lock:
            self.script.extend(answers)

    def accepted(self, endpoint: str = "errors") -> list[dict]:
        """Bodies answered 202 on ``endpoint`` ("errors" or "transactions"), in arrival order."""
        with self._lock:
            return [r.body for r in self.received if r.status == 202 and r.path.endswith(f"/{endpoint}/")]

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.received) >= n, timeout)

    def wait_for_in_flight(self, n: int, timeout: float = 10.0) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: self.in_flight >= n, timeout)

    # --- serving ------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        if headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        elif raw[:1] == b"x":  # the original agent's bare zlib
            raw = zlib.decompress(raw)
        body = json.loads(raw)
        with self._arrived:
            answer = self.script.pop(0) if self.script else Answer()
            self.in_flight += 1
            self._arrived.notify_all()
        try:
            if answer.hold:
                self._released.wait(5.0)
            # Recorded before the answer goes out: once the agent has its answer, the test sees it.
            with self._arrived:
                self.received.append(Received(handler.path, headers, body, answer.status, arrived))
                self._arrived.notify_all()
            payload = b'{"status": "ok"}' if answer.status == 202 else b'{"error": "scripted"}'
            handler.send_response(answer.status)
            if answer.status == 202:
                handler.send_header("Location", f"{self.url}/events/{body.get('client_supplied_id', '')}/")
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        finally:
            with self._arrived:
                self.in_flight -= 1
                self._arrived.notify_all()
