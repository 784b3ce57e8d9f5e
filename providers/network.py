"""Where GreenGate may send provider credentials: checked when a base URL is saved and again at connect time.

A provider's base URL must be http(s) with a host and no user info. Loopback, private, link-local and other
internal addresses are refused unless the provider allows them explicitly (a local model server); cloud
metadata endpoints are refused whatever the provider says, since they hand out the host's own credentials.

At connect time the upstream client's resolver applies the same rule to every address a host name resolves
to, so a name that later resolves inward (DNS rebinding) is caught too. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from contextvars import ContextVar
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.azure.internal"})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.169.253", "100.100.100.200", "fd00:ec2::254")
)

# Whether the call being made may reach internal addresses; set by the attempt loop for each deployment,
# and read by the upstream client to pick the connection pool (and resolver) for that policy.
private_network_allowed: ContextVar[bool] = ContextVar("private_network_allowed", default=False)


class AddressRefused(OSError):
    """The upstream's address is one GreenGate must not send credentials to."""


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why this address is refused, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    internal = (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
        or address.is_multicast
        or (isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network("100.64.0.0/10"))
    )
    if internal and not allow_private:
        return "an internal address (loopback, private or link-local); allow it on the provider if intended"
    return None


def check_base_url(url: str, *, allow_private: bool, resolve: bool = True) -> None:
    """Raise ValueError with a reason if credentials must not be sent to this URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("The base URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValueError("The base URL must name a host.")
    if parts.username or parts.password:
        raise ValueError("The base URL must not carry user info; set the provider's API key instead.")
    host = parts.hostname.rstrip(".").lower()
    if host in METADATA_HOSTS:
        raise ValueError("The base URL points at a cloud metadata service.")
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            addresses = [ipaddress.ip_address("127.0.0.1")]
        elif resolve:
            try:
                infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
            except OSError:
                return  # not resolvable now: the connect-time check still applies
            addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        else:
            return
    for address in addresses:
        reason = refusal(address, allow_private=allow_private)
        if reason:
            raise ValueError(f"The base URL resolves to {reason}.")


@lru_cache(maxsize=4096)
def literal_refusal(base_url: str, allow_private: bool) -> str | None:
    """The connect-time rule for hosts aiohttp never resolves (IP literals, localhost); cached per URL."""
    try:
        check_base_url(base_url, allow_private=allow_private, resolve=False)
    except ValueError as exc:
        return str(exc)
    return None


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's resolver, keeping only the addresses its client's policy may reach."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        allow_private = self._allow_private
        if host.rstrip(".").lower() in METADATA_HOSTS:
            raise AddressRefused(f"{host} is a cloud metadata service")
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if refusal(ipaddress.ip_address(r["host"]), allow_private=allow_private) is None]
        if not allowed:
            raise AddressRefused(f"{host} resolves only to addresses GreenGate may not call")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
