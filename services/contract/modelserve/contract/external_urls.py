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

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from modelserve.common.addresses import Address, networks, refused_address, resolve


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
            addresses = await resolve(host)
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
