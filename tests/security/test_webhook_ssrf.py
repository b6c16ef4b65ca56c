"""An app owner (a stranger: anyone can sign up) must not be able to make the worker's webhook call
reach this server's own network: not by a redirect, not by a DNS answer that changes after the
check, not by IPv6 or odd IPv4 spellings of a local address.

The worker's code runs unchanged over real sockets; ``tests.fakenet`` stands in for DNS and the
internet: a "public" address is routed to a server on 127.0.0.2, the "internal" service listens on
127.0.0.3, and any other connection is refused before a packet leaves the machine.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from processing.models import AppAlertSettings
from processing.webhooks import webhook_post, webhook_target_refusal
from tests.fakenet import FakeNet

# A global address (example.com's, once): fakenet routes it to 127.0.0.2, nothing leaves.
PUBLIC = "93.184.216.34"
PAYLOAD = {"text": "New issue in web: <https://opbeat.example/…|ZeroDivisionError>"}


class _Recorder(BaseHTTPRequestHandler):
    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "host": self.headers.get("Host"),
                "body": self.rfile.read(length),
            }
        )
        if self.server.location:
            self.send_response(302)
            self.send_header("Location", self.server.location)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _record  # noqa: N815 - http.server's hook names

    def log_message(self, *args):
        pass


@contextmanager
def http_server(host: str, *, location: str = "", tls_context=None):
    """An HTTP server on ``host`` recording every request in ``.requests``; it answers 302 to
    ``location`` when given, else 200."""
    server = ThreadingHTTPServer((host, 0), _Recorder)
    server.requests = []
    server.location = location
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def net(monkeypatch, settings) -> FakeNet:
    settings.OPBEAT_WEBHOOK_ALLOW_PRIVATE = False
    return FakeNet(monkeypatch)


@pytest.mark.parametrize("location", ["http://127.0.0.3:{port}/admin", "http://internal.example.test:{port}/admin"])
def test_a_redirect_into_this_network_is_not_followed(net, caplog, location):
    net.answer("hooks.example.test", [PUBLIC])
    net.answer("internal.example.test", ["127.0.0.3"])
    net.route(PUBLIC, "127.0.0.2")
    with http_server("127.0.0.3") as internal:
        with http_server("127.0.0.2", location=location.format(port=internal.server_port)) as hooks:
            with caplog.at_level("WARNING"):
                delivered = webhook_post(url=f"http://hooks.example.test:{hooks.server_port}/T1", payload=PAYLOAD)
    assert [request["method"] for request in hooks.requests] == ["POST"]
    assert internal.requests == []
    assert delivered is False
    assert "redirects are not followed" in caplog.text


def test_a_dns_answer_that_changes_after_the_check_does_not_reach_this_network(net):
    # First answer public (what the check sees), every later one loopback (DNS rebinding).
    net.answer("rebind.example.test", [PUBLIC], ["127.0.0.3"])
    net.route(PUBLIC, "127.0.0.2")
    with http_server("127.0.0.3") as internal, http_server("127.0.0.2") as hooks:
        # One port for both, as a rebinding attacker would pick the internal service's port.
        url = f"http://rebind.example.test:{hooks.server_port}/T1"
        internal_url = f"http://rebind.example.test:{internal.server_port}/T1"
        delivered = webhook_post(url=url, payload=PAYLOAD)
        webhook_post(url=internal_url, payload=PAYLOAD)
    assert internal.requests == []
    # The call went to the checked address, with the name in the Host header.
    assert delivered is True
    [request] = hooks.requests
    assert request["host"] == f"rebind.example.test:{hooks.server_port}"
    assert json.loads(request["body"]) == PAYLOAD
    assert set(net.connects) == {PUBLIC}


@pytest.mark.parametrize("host", ["[64:ff9b::7f00:1]", "[64:ff9b::a9fe:a9fe]", "[2002:7f00:1::]"])
def test_nat64_and_6to4_forms_of_local_addresses_are_refused_before_any_connection(net, caplog, host):
    with caplog.at_level("WARNING"):
        assert webhook_post(url=f"http://{host}:8080/hook", payload=PAYLOAD) is False
    assert net.connects == []
    assert f"webhook http://{host}:8080/hook not called" in caplog.text
    assert "not a public address" in webhook_target_refusal(f"http://{host}/hook")


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "0x7f000001"])
def test_odd_spellings_of_loopback_are_refused(net, host):
    with http_server("127.0.0.1") as internal:
        assert webhook_post(url=f"http://{host}:{internal.server_port}/hook", payload=PAYLOAD) is False
    assert internal.requests == []
    assert net.connects == []
    assert webhook_target_refusal(f"http://{host}/") == f"{host} resolves to 127.0.0.1, which is not a public address"


REFUSED = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254", "0.0.0.0",
    "0.1.2.3", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.0.8", "198.18.0.1",
    "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1", "ff0e::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "::a00:1", "64:ff9b::a00:1", "64:ff9b:1::5db8:d822",
    "2002:a00:1::", "2002:a9fe:a9fe::", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
]  # fmt: skip
ALLOWED = ["93.184.216.34", "2606:4700::1111", "64:ff9b::5db8:d822", "2002:5db8:d822::", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("address", REFUSED)
def test_every_local_kind_of_address_is_refused(net, address):
    host = f"[{address}]" if ":" in address else address
    assert webhook_target_refusal(f"https://{host}/hook").endswith("not a public address")
    net.answer("hooks.example.test", [PUBLIC, address])
    assert webhook_target_refusal("https://hooks.example.test/hook").startswith(
        f"hooks.example.test resolves to {ipaddress.ip_address(address)}, which is"
    )
    assert net.connects == []


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_and_their_ipv6_forms_are_allowed(net, address):
    host = f"[{address}]" if ":" in address else address
    assert webhook_target_refusal(f"https://{host}/hook") == ""


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_judged_the_same_in_every_ipv6_form(v4):
    # The embedded address decides: mapped, NAT64 and 6to4 forms of an address share its verdict.
    forms = [
        f"::ffff:{v4}",
        str(ipaddress.IPv6Address((0x64FF9B << 96) | int(v4))),
        str(ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80))),
    ]
    allowed = webhook_target_refusal(f"http://{v4}/") == ""
    for form in forms:
        assert (webhook_target_refusal(f"http://[{form}]/") == "") is allowed, form


def test_private_targets_are_called_when_the_operator_allows_them(net, settings):
    settings.OPBEAT_WEBHOOK_ALLOW_PRIVATE = True
    net.answer("chat.internal.test", ["127.0.0.2"])
    with http_server("127.0.0.2") as chat:
        assert webhook_post(url=f"http://chat.internal.test:{chat.server_port}/hooks/1", payload=PAYLOAD) is True
    assert [request["path"] for request in chat.requests] == ["/hooks/1"]


def test_the_alerts_page_says_why_a_webhook_url_is_refused(net, client, db):
    from django.urls import reverse

    from tests.factories import org_app_create

    user, organization, app = org_app_create()
    client.force_login(user)
    url = reverse("dashboards:alert_settings", args=[organization.public_id, app.public_id])
    net.answer("hooks.example.test", ["10.0.0.5"])
    policy = {
        "section": "policy", "alert_new": "on", "spike_threshold": 50, "spike_window_minutes": 10,
        "issue_window_minutes": 30, "digest_minutes": 5,
    }  # fmt: skip
    for webhook_url, reason in (
        ("http://hooks.example.test/T1", "hooks.example.test resolves to 10.0.0.5, which is not a public address"),
        ("http://[64:ff9b::7f00:1]/T1", "64:ff9b::7f00:1 is a form of 127.0.0.1, which is not a public address"),
    ):
        response = client.post(url, {**policy, "webhook_url": webhook_url})
        assert response.status_code == 400
        assert f"This URL would not be called: {reason}." in response.content.decode()
        assert not AppAlertSettings.objects.filter(app=app).exclude(webhook_url="").exists()
    net.answer("hooks.example.test", [PUBLIC])
    assert client.post(url, {**policy, "webhook_url": "https://hooks.example.test/T1"}).status_code == 302
    assert AppAlertSettings.objects.get(app=app).webhook_url == "https://hooks.example.test/T1"


# --- https: the pinned connection still checks the certificate against the URL's name -----------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> Path:
    """A throwaway CA and a certificate for hooks.example.test signed by it."""
    directory = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=Opbeat test CA", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "hook.key", "-out", "hook.csr",
             "-subj", "/CN=hooks.example.test", cwd=directory)  # fmt: skip
    (directory / "ext.cnf").write_text("subjectAltName=DNS:hooks.example.test\n")
    _openssl("x509", "-req", "-in", "hook.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "hook.pem", "-days", "2", "-extfile", "ext.cnf", cwd=directory)  # fmt: skip
    return directory


@pytest.mark.parametrize("name, delivered", [("hooks.example.test", True), ("other.example.test", False)])
def test_https_is_pinned_and_verifies_the_certificate_for_the_name(net, monkeypatch, tls_files, name, delivered):
    import ssl

    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files / "ca.pem"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files / "hook.pem", tls_files / "hook.key")
    net.answer(name, [PUBLIC], ["127.0.0.3"])
    net.route(PUBLIC, "127.0.0.2")
    with http_server("127.0.0.2", tls_context=context) as hooks:
        assert webhook_post(url=f"https://{name}:{hooks.server_port}/T1", payload=PAYLOAD) is delivered
    assert [request["host"] for request in hooks.requests] == ([f"{name}:{hooks.server_port}"] if delivered else [])
    assert set(net.connects) == {PUBLIC}


def test_an_endpoint_that_drips_its_answer_does_not_hold_the_worker(net, monkeypatch):
    # The worker sends alerts inline; an owner's endpoint answering a byte a second (inside the
    # per-read timeout) would otherwise hold it for as long as the endpoint likes.
    from processing import webhooks

    monkeypatch.setattr(webhooks, "WEBHOOK_TOTAL_SECONDS", 2)
    net.answer("drip.example.test", [PUBLIC])
    net.route(PUBLIC, "127.0.0.2")
    listener = socket.create_server(("127.0.0.2", 0))
    stop = threading.Event()

    def drip():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 600:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(1)

    server = threading.Thread(target=drip, daemon=True)
    server.start()
    result = {}
    caller = threading.Thread(
        target=lambda: result.setdefault(
            "delivered", webhook_post(url=f"http://drip.example.test:{listener.getsockname()[1]}/T1", payload=PAYLOAD)
        ),
        daemon=True,
    )
    caller.start()
    caller.join(timeout=60)  # a bound for the test, not the assertion
    stop.set()
    listener.close()
    assert not caller.is_alive(), "the webhook call was still waiting on the dripping endpoint"
    assert result["delivered"] is False
