"""Which URLs a non-admin's `external` ModelServe may name: the platform calls them, from
inside the cluster, so a URL must not lead it to itself or to anything private.

Refused: URLs that are not plain http(s) (userinfo, a query or a fragment: a trailing `?`
would make the path the platform appends the caller's), and hosts that are, or resolve
to, loopback, link-local, private (RFC 1918, RFC 4193), CGNAT, unspecified, multicast, an
IPv6 address carrying an IPv4 one (NAT64, 6to4, Teredo), or the cluster's pod and service
ranges. Hosts or networks in the allowlist are let through.
The address is checked when the ModelServe is admitted; the components that call the URL
follow no redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSED_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # this network, unspecified
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (cloud metadata services)
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # CGNAT
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",
        "::1/128",
        "fe80::/10",  # link-local
        "fc00::/7",  # unique local (RFC 4193)
        "ff00::/8",  # multicast
        # IPv6 addresses that carry an IPv4 one, which a gateway on the way reaches:
        "64:ff9b::/96",  # NAT64 (RFC 6052): 64:ff9b::a9fe:a9fe is 169.254.169.254
        "64:ff9b:1::/48",  # NAT64, local use (RFC 8215)
        "2002::/16",  # 6to4 (RFC 3056)
        "2001::/32",  # Teredo (RFC 4380)
    )
)
RESOLVE_SECONDS = 2.0


def networks(values: Sequence[str]) -> list[Network]:
    """The entries of `values` that are addresses or CIDRs, as networks."""
    found: list[Network] = []
    for value in values:
        try:
            found.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            continue
    return found


def shape_refusal(url: str) -> str | None:
    """Why `url` is not a plain http(s) URL with a host, or None."""
    if "?" in url or "#" in url:
        return f"the URL {url!r} may not have a query or a fragment"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as error:
        return f"the URL {url!r} is not valid: {error}"
    if parts.scheme not in ("http", "https"):
        return f"the URL {url!r} must be http or https"
    if "@" in parts.netloc:
        return f"the URL {url!r} may not carry a user name or password"
    if not parts.hostname:
        return f"the URL {url!r} names no host"
    return None


def refused_address(address: Address, cluster: Sequence[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in (*REFUSED_NETWORKS, *cluster))


async def _addresses(host: str) -> list[Address]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_SECONDS
    )
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def url_refusal(
    url: str, *, cluster_cidrs: Sequence[str], allowed: Sequence[str]
) -> str | None:
    """Why a non-admin may not name `url` for an external server, or None."""
    shape = shape_refusal(url)
    if shape is not None:
        return shape
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    opened = networks(allowed)
    if host in {value.strip().lower().rstrip(".") for value in allowed}:
        return None
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = await _addresses(host)
        except (OSError, TimeoutError, UnicodeError) as error:
            # UnicodeError: a label that is empty or over 63 characters (IDNA refuses it).
            return f"the host {host!r} of {url!r} cannot be resolved: {error}"
    cluster = networks(cluster_cidrs)
    for address in addresses:
        if any(address in network for network in opened):
            continue
        if refused_address(address, cluster):
            return (
                f"the host {host!r} of {url!r} is (or resolves to) {address}, a loopback, "
                "link-local, private or cluster address"
            )
    return None
