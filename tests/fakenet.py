"""A stand-in for the internet, for tests of code that calls URLs: fake DNS answers, and a firewall
that keeps every connection on this machine.

``FakeNet`` patches ``socket.getaddrinfo`` and ``socket.socket.connect`` for one test (through
pytest's ``monkeypatch``), so the code under test runs unchanged, with real sockets:

- a name given to ``answer`` resolves to the scripted addresses, one list per lookup (the last
  one repeats), so a name can answer one thing to a check and another to a connection;
- numeric hosts and ``localhost`` go to the real resolver (no query leaves the machine); any other
  name fails as an unknown name, so a test never sends a DNS query;
- a connection to a loopback address goes through; one to an address given to ``route`` goes,
  like NAT, to the local server standing in for it, while the code under test sees the public
  address; any other connection is refused before a packet is sent. Every attempt is recorded.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import defaultdict

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect


class FakeNet:
    def __init__(self, monkeypatch) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: dict[str, int] = defaultdict(int)
        self.routes: dict[str, str] = {}
        self.connects: list[str] = []
        monkeypatch.setattr(socket, "getaddrinfo", self._getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", self._connect_method())

    def answer(self, name: str, *answers: list[str]) -> None:
        """``name`` resolves to ``answers[0]`` at the first lookup, ``answers[1]`` at the second..."""
        self.answers[name.lower()] = [list(addresses) for addresses in answers]

    def route(self, public: str, local: str) -> None:
        """Connections to ``public`` reach the server listening on ``local`` (same port)."""
        self.routes[str(ipaddress.ip_address(public))] = local

    def _getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - socket's signature
        name = host.decode() if isinstance(host, bytes) else host
        key = (name or "").lower().rstrip(".")
        if key in self.answers:
            index = self.lookups[key]
            self.lookups[key] += 1
            scripted = self.answers[key]
            addresses = scripted[min(index, len(scripted) - 1)]
            port_number = int(port or 0)
            infos = []
            for address in addresses:
                ip = ipaddress.ip_address(address)
                if ip.version == 4:
                    infos.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port_number)))
                else:
                    infos.append(
                        (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port_number, 0, 0))
                    )
            return infos
        if key == "localhost":
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        # Numeric forms only (including glibc's "2130706433" and "0x7f.1"): never a DNS query.
        try:
            return _real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise socket.gaierror(socket.EAI_NONAME, f"fakenet: no answer for {name!r}") from None

    def _connect_method(self):
        net = self

        def connect(sock, address):
            host = address[0] if isinstance(address, tuple) else address
            net.connects.append(host)
            ip = ipaddress.ip_address(host.split("%", 1)[0])
            mapped = getattr(ip, "ipv4_mapped", None)
            if str(ip) in net.routes:
                return _real_connect(sock, (net.routes[str(ip)], *address[1:]))
            if ip.is_loopback or (mapped is not None and mapped.is_loopback):
                return _real_connect(sock, address)
            raise ConnectionRefusedError(f"fakenet: {host} is not on this machine; nothing was sent")

        return connect
