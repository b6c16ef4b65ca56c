"""The stand-in receiver every agent reports to during the benchmark: answers at once (202 for
data, a version document for elastic-apm's GET) and counts the transactions each agent delivered,
so the bench can compare them with the requests wrk made.

    python -m bench.overhead_apps.sink PORT      # GET /_counts returns the counts as JSON

Counted: opbeat-agent's transactions bodies (the histograms' counts, and the drops it reports),
sentry-sdk's envelopes (transaction items), elastic-apm's ND-JSON events (transaction lines).
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts: Counter = Counter()
lock = threading.Lock()


def _inflate(raw: bytes, encoding: str) -> bytes:
    if encoding == "gzip" or raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if encoding == "deflate" or raw[:1] == b"x":
        return zlib.decompress(raw)
    return raw


def _count(path: str, body: bytes, headers) -> Counter:
    found: Counter = Counter()
    if path.endswith("/transactions/"):
        data = json.loads(body)
        found["opbeat"] += sum(h["count"] for h in data.get("histograms", ()))
        found["opbeat_traces"] += len(data.get("traces", ()))
        found["opbeat_dropped"] += int(data.get("dropped", {}).get("transactions", 0))
    elif "/envelope/" in path:
        for line in body.split(b"\n"):
            if line.startswith(b"{") and b'"type":"transaction"' in line.replace(b" ", b""):
                found["sentry"] += 1
    elif path.startswith("/intake/v2/events"):
        for line in body.split(b"\n"):
            if line.startswith(b'{"transaction"'):
                found["elastic"] += 1
    dropped = headers.get("X-Opbeat-Agent-Dropped")
    if dropped:
        found["opbeat_dropped_bodies"] += int(dropped)
    return found


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/_counts":
            with lock:
                self._answer(200, dict(counts))
            return
        self._answer(200, {"version": "8.14.0", "build_date": "2024-06-01T00:00:00Z", "build_sha": "bench"})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            found = _count(self.path, _inflate(raw, self.headers.get("Content-Encoding", "")), self.headers)
        except Exception as exc:  # noqa: BLE001 - a body we cannot read is counted as such, not fatal
            found = Counter({f"unreadable {self.path}: {type(exc).__name__}": 1})
        with lock:
            counts.update(found)
        self._answer(202, {})


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
