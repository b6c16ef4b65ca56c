"""The address of the client that sent a request: what every per-address limit counts by.

REMOTE_ADDR is the peer of the TCP connection. Behind N reverse proxies it is the nearest proxy,
and the client is the Nth X-Forwarded-For entry from the right: each proxy appends the address it
received the request from, so the rightmost N entries were written by proxies we trust, and
anything further left was written by the client and proves nothing. Without configured proxies
(``OPBEAT_TRUSTED_PROXY_COUNT`` 0, the default) X-Forwarded-For is ignored, so a client can never
choose the address it is counted under. This module never trusts a header it was not told to.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client's IP address, normalised (``::ffff:…`` forms and capitals as ipaddress prints them)."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.OPBEAT_TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        # Fewer entries than proxies: the request did not come through all of them (a connection
        # from inside, straight to the web process), so its peer is the best we know. An entry
        # that is no address is a misconfigured proxy: the peer again.
        if len(forwarded) >= proxies and _address(forwarded[-proxies]):
            return _address(forwarded[-proxies])
    return _address(remote) or remote


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def client_address_key(ip: str) -> str:
    """What a per-address limit counts: the address for IPv4, the /64 network for IPv6 (one
    host is commonly given a whole /64, so counting single IPv6 addresses would not limit it)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    if address.version == 6:
        return str(address.ipv4_mapped)
    return str(address)
