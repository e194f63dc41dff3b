"""Addresses a platform component must not be sent to by a tenant's URL: loopback,
link-local (cloud metadata services), private (RFC 1918, RFC 4193), CGNAT, unspecified,
multicast and reserved, and IPv6 addresses that carry an IPv4 one (NAT64, 6to4, Teredo),
which a gateway on the way would reach. Used for `external` servers' URLs (the contract
service) and for the media URLs of requests (the gateway).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

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


def refused_address(address: Address, cluster: Sequence[Network] = ()) -> bool:
    """Whether `address` is one of REFUSED_NETWORKS' or the `cluster`'s (its pod and
    service ranges); an IPv4-mapped IPv6 address counts as its IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in (*REFUSED_NETWORKS, *cluster))


async def resolve(host: str) -> list[Address]:
    """The addresses `host` resolves to (OSError, TimeoutError or UnicodeError if none)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_SECONDS
    )
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
