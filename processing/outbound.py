"""Outbound HTTP to a URL a tenant typed (webhooks): only to public addresses, and only to the
address that was checked.

The host is resolved once; every address the resolver returns is judged (one non-public answer
refuses the URL), and the connection goes to exactly a checked address, with the URL's host in the
``Host`` header and, for https, in SNI and the certificate check. Resolving again at connect time
(what urllib does) would let a name answer "public" to the check and "127.0.0.1" to the connection
(DNS rebinding). Odd literals such as ``http://2130706433/`` or ``http://0x7f.1/`` are judged by
what the resolver makes of them, which is what a connection would use.

Redirects are never followed: a 3xx is a failed call. Chat services answer their webhooks
directly, and a followed redirect is one more hop whose target the tenant chooses.

This module never reads settings: whether private addresses are allowed is an argument.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 ranges whose last 32 bits are an IPv4 address a gateway forwards to: judged by that address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv6 ranges refused whole: IPv4-compatible addresses (deprecated; ::1 and :: are in it), local-use
# NAT64 (RFC 8215, translated inside the operator's own network) and Teredo (the client's IPv4
# address is obfuscated, and the relay is on someone's network).
_REFUSED_V6 = (
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2001::/32"),
)
# Non-public IPv4 ranges, listed although ``is_global`` covers them, so the rule does not depend on
# the Python version's tables: "this network", RFC 1918, CGNAT, loopback, link-local, IETF
# protocol assignments, benchmarking, multicast, reserved and broadcast.
_REFUSED_V4 = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
MAX_RESPONSE_BYTES = 64 * 1024


class TargetRefused(Exception):
    """The URL is not called; the message says why, for the owner and the log."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def address_refusal(ip: IPAddress) -> str:
    """Why ``ip`` is not a public address, phrased to follow "<ip> is", or "" when it is public.
    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _REFUSED_V6):
            return "an IPv4-compatible, local-use NAT64 or Teredo address, not a public address"
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            refusal = address_refusal(embedded)
            return f"a form of {embedded}, which is {refusal}" if refusal else ""
        if ip.is_site_local:
            return "not a public address"
    elif any(ip in net for net in _REFUSED_V4):
        return "not a public address"
    if (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    ):
        return "not a public address"
    return ""


def target_resolve(url: str, *, allow_private: bool) -> Target:
    """Parse ``url`` and resolve its host once; raise ``TargetRefused`` unless it is http(s) and
    (unless ``allow_private``) every address the host resolves to is public."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("only http and https URLs with a host are called")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"the port is not valid: {exc}") from None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"the host does not resolve: {exc}") from None
    addresses: list[str] = []
    for info in infos:
        if info[0] not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = info[4][0]
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not allow_private:
            refusal = address_refusal(ip)
            if refusal:
                where = f"{ip}" if parts.hostname == address else f"{parts.hostname} resolves to {ip}, which"
                raise TargetRefused(f"{where} is {refusal}")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"{parts.hostname} has no IPv4 or IPv6 address")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, path=path, addresses=tuple(addresses))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``address`` for a request to ``host``: http.client puts ``host`` in
    the Host header; only the socket goes to the checked address."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As ``_PinnedHTTPConnection``, with TLS: SNI and the certificate check use ``host``."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _connection_abort(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def target_post(target: Target, *, body: bytes, headers: dict[str, str], timeout: float, total_seconds: float) -> int:
    """POST ``body`` to ``target`` at its first checked address that accepts a connection (no
    proxy, no redirect); returns the HTTP status. ``timeout`` bounds each socket operation and
    ``total_seconds`` the whole exchange once connected (a server dripping its answer a byte at a
    time would otherwise hold the worker). Raises OSError (and http.client's errors) when no
    address answers."""
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    last_error: OSError | None = None
    for address in target.addresses:
        connection = connection_class(target.host, target.port, address=address, timeout=timeout)
        try:
            try:
                connection.connect()
            except ssl.SSLError:
                raise
            except OSError as exc:
                # Another checked address of the same name may answer (an IPv6 and an IPv4 one).
                last_error = exc
                continue
            watchdog = threading.Timer(total_seconds, _connection_abort, args=(connection,))
            watchdog.daemon = True
            watchdog.start()
            try:
                connection.request("POST", target.path, body=body, headers=headers)
                response = connection.getresponse()
                # Read a little so the connection closes cleanly; the body is not used.
                response.read(MAX_RESPONSE_BYTES)
                return response.status
            finally:
                watchdog.cancel()
        finally:
            connection.close()
    raise last_error or OSError(f"no address of {target.host} to connect to")
