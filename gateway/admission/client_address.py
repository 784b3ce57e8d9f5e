"""The client's address, for limits on callers without a key: the connection's, or what trusted proxies say."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

from greengate_site.request_context import header_value


def client_address(scope: dict) -> str:
    """For an ASGI request: see `address`."""
    peer = (scope.get("client") or ("", 0))[0] or ""
    return address(peer, header_value(scope.get("headers", []), b"x-forwarded-for"))


def request_address(request: HttpRequest) -> str:
    """For a Django request (the admin's login throttling): see `address`."""
    return address(request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR"))


def address(peer: str, forwarded: str | None) -> str:
    """The nearest address in X-Forwarded-For that is not one of TRUSTED_PROXIES, when the connection itself
    comes from one of them; otherwise the connection's address. Never a value a client could choose freely."""
    networks = settings.TRUSTED_PROXY_NETWORKS
    if not networks or not _trusted(peer, networks):
        return peer
    forwarded = forwarded or ""
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    # Read right to left: each trusted proxy appended the address it saw; the first untrusted one is the client.
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop if _valid(hop) else peer
    return hops[0] if hops and _valid(hops[0]) else peer


def _valid(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(text: str, networks: tuple) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(address in network for network in networks)
