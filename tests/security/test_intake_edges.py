"""The intake's edges, through the real servers we ship (granian as ``opbeat_run`` starts it, and
gunicorn as the README's production line): a chunked body without Content-Length is read, under
the same streamed size cap; a client that sends its body a few bytes a second is answered 408
within the time limit, and while a crowd of them is held, another client is still answered.
Under gunicorn a client that sends nothing more is cut off as well.

The servers run in the embedded mode (SQLite and the on-disk queue under a temporary var/), with
``OPBEAT_BODY_READ_SECONDS=2`` and a 64 KiB body cap so the test stays short.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import sys
import threading
import time

import pytest

from opbeat_server.management import supervisor
from tests.e2e import stack

BODY_READ_SECONDS = 2
MAX_BYTES = 64 * 1024
# More slow clients than the server has request threads (granian's --backpressure in opbeat_run,
# gunicorn's --threads below), so without the time limit they would hold every one of them.
SLOW_CLIENTS = 36
GUNICORN_THREADS = 8


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """A migrated embedded-mode var/ with one app, and the environment the servers run with."""
    var_dir = tmp_path_factory.mktemp("var")
    env = stack.child_env(
        var_dir,
        OPBEAT_BODY_READ_SECONDS=str(BODY_READ_SECONDS),
        OPBEAT_MAX_COMPRESSED_BYTES=str(MAX_BYTES),
        ALLOWED_HOSTS="127.0.0.1",
    )
    stack.manage("migrate", "--noinput", env=env)
    created = json.loads(
        stack.manage(
            "opbeat_create_app",
            "--email",
            "edges@example.com",
            "--password",
            "a long password",
            "--org",
            "Edges",
            "--app",
            "web",
            env=env,
        )  # fmt: skip
    )
    return {"env": env, "log_dir": tmp_path_factory.mktemp("logs"), **created}


def _granian_argv(port: int) -> list[str]:
    return supervisor.web_argv(host="127.0.0.1", port=port, workers=1)


def _gunicorn_argv(port: int) -> list[str]:
    # The README's production line, on one worker.
    return [
        sys.executable, "-m", "gunicorn", "opbeat_server.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "-k", "gthread", "--threads", str(GUNICORN_THREADS),
    ]  # fmt: skip


@pytest.fixture(scope="module", params=["granian", "gunicorn"])
def server(request, site) -> dict:
    port = stack.port_free()
    argv = {"granian": _granian_argv, "gunicorn": _gunicorn_argv}[request.param](port)
    process = stack.Process.start(request.param, argv, env=site["env"], log_dir=site["log_dir"])
    try:
        stack.wait_until(
            lambda: process.assert_running() or stack.port_listening(port),
            timeout=stack.START_TIMEOUT, what=request.param, on_timeout=process.log_tail,
        )  # fmt: skip
        path = f"/api/v1/organizations/{site['organization_id']}/apps/{site['app_id']}/errors/"
        yield {"name": request.param, "port": port, "path": path, "token": site["secret_token"], "process": process}
    finally:
        process.stop(grace=5)


def _event(size: int = 0) -> bytes:
    return json.dumps({"message": "chunked " + "x" * size, "culprit": "edges", "level": "error"}).encode()


def _post(server: dict, body, **headers) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30)
    try:
        connection.request(
            "POST", server["path"], body=body,
            headers={"Authorization": f"Bearer {server['token']}", "Content-Type": "application/json", **headers},
            encode_chunked=not isinstance(body, bytes),
        )  # fmt: skip
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def _head(server: dict, *, length: str = "", chunked: bool = False) -> bytes:
    lines = [
        f"POST {server['path']} HTTP/1.1", f"Host: 127.0.0.1:{server['port']}",
        f"Authorization: Bearer {server['token']}", "Content-Type: application/json",
    ]  # fmt: skip
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def test_a_chunked_body_without_content_length_is_read(server):
    def pieces():
        body = _event(2000)
        for start in range(0, len(body), 700):
            yield body[start : start + 700]

    status, answer = _post(server, pieces())
    assert (status, answer.get("error")) == (202, None), answer
    assert answer["id"]


def test_a_chunked_body_over_the_cap_is_refused_while_it_streams(server):
    # The client would send 50 times the cap; the 413 must come while it is still sending, which
    # it cannot if the server read the whole body before looking at its size.
    sock = socket.create_connection(("127.0.0.1", server["port"]), timeout=30)
    try:
        sock.sendall(_head(server, chunked=True))
        piece = b"%x\r\n%s\r\n" % (16 * 1024, b"x" * 16 * 1024)
        sent, stopped_by = 0, "end"
        while sent < 50 * MAX_BYTES:
            if select.select([sock], [], [], 0)[0]:
                stopped_by = "answer"
                break
            try:
                sock.sendall(piece)
            except OSError:
                stopped_by = "closed"
                break
            sent += 16 * 1024
        answer = sock.recv(4096)
    finally:
        sock.close()
    assert stopped_by in ("answer", "closed")
    assert _status(answer) == 413, answer[:200]


def test_a_slow_body_gets_408_and_other_clients_are_still_served(server):
    # Each slow client declares 200 bytes and sends one every half second (100 s in all).
    slow = [socket.create_connection(("127.0.0.1", server["port"]), timeout=30) for _ in range(SLOW_CLIENTS)]
    answers: dict[int, bytes] = {}
    other: dict = {}

    def other_client():
        # Another client while the slow ones are held: it is answered.
        other["status"], _ = _post(server, _event())

    other_thread = threading.Thread(target=other_client)
    try:
        for sock in slow:
            sock.sendall(_head(server, length="200") + b'{"message": "')
        rounds = 0
        deadline = time.monotonic() + 60  # a bound for the test, not the assertion
        while len(answers) < len(slow) and time.monotonic() < deadline:
            for index, sock in enumerate(slow):
                if index in answers:
                    continue
                if select.select([sock], [], [], 0)[0]:
                    answers[index] = sock.recv(4096)
                    continue
                try:
                    sock.sendall(b"x")
                except OSError:
                    answers[index] = b"closed"
            rounds += 1
            if rounds == 2:
                other_thread.start()
            time.sleep(0.5)
    finally:
        for sock in slow:
            sock.close()
        if other_thread.is_alive() or rounds >= 2:
            other_thread.join(timeout=60)
    assert other.get("status") == 202
    # Every slow client got its 408 (or its connection closed) long before it sent its body.
    held = len(slow) - len(answers)
    assert held == 0, f"{held} slow clients still held\n{server['process'].log_tail()}"
    assert {_status(answer) if answer != b"closed" else 408 for answer in answers.values()} == {408}


def test_a_client_that_stops_sending_is_answered_408_and_closed(server, request):
    # Granian gives the application no way to end a read waiting on a silent client (see
    # intake/body.py); gunicorn hands over its socket, so there the silent client is cut off too.
    # The granian case is the known gap (README, Security): strict, so fixing it fails this mark.
    if server["name"] != "gunicorn":
        request.applymarker(pytest.mark.xfail(strict=True, reason="granian holds a silent body client open"))
    sock = socket.create_connection(("127.0.0.1", server["port"]), timeout=BODY_READ_SECONDS * 5)
    try:
        sock.sendall(_head(server, length="50") + b"{")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    finally:
        sock.close()
    assert _status(answer) == 408
    assert f"not complete within {BODY_READ_SECONDS} seconds".encode() in answer


def test_a_content_length_body_still_reads_as_before(server):
    status, answer = _post(server, _event(100))
    assert status == 202, answer
    status, answer = _post(server, _event(MAX_BYTES))
    assert status == 413 and "over the limit" in answer["error"]


def test_a_server_that_cannot_end_a_chunked_body_answers_411(client, db):
    # Django's own servers (runserver, the test client) pass no wsgi.input_terminated: a chunked
    # body cannot be told from an empty one there, so the client is asked for a Content-Length.
    from intake.auth import app_credentials_cache_clear
    from tests.factories import org_app_token_create

    app_credentials_cache_clear()
    _, organization, app, token = org_app_token_create()
    response = client.generic(
        "POST", f"/api/v1/organizations/{organization.public_id}/apps/{app.public_id}/errors/", b"",
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_TRANSFER_ENCODING="chunked",
    )  # fmt: skip
    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]
