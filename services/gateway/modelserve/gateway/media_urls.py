"""The media URLs of a request, checked before it goes to a model server.

A chat message's content parts may name media by URL (OpenAI's `image_url`, and the
`video_url` and `audio_url` of vLLM and others; the Responses API's `input_image` becomes
an `image_url`). The model server fetches such a URL itself, from inside the cluster: a
caller could make it read the cloud's metadata service, a pod or a Service, which their
token does not reach (server-side request forgery). So, before any other step:

- `data:` URLs pass: nothing is fetched;
- with GATEWAY_REMOTE_MEDIA=false, no other URL passes;
- only http and https URLs, without a user name or password, pass;
- with GATEWAY_MEDIA_URL_HOSTS, only URLs of those hosts (`images.example.com`, or
  `*.example.com` for its subdomains) pass, their addresses unchecked;
- otherwise the host must be, or resolve to, public addresses only: none loopback,
  link-local, private, CGNAT, multicast, reserved, or an IPv6 one that carries an IPv4 one
  (`modelserve.common.addresses`). What a name resolves to is kept `CACHE_SECONDS`.

A refused URL is a 400 `media_url_not_allowed` naming its field. The model server resolves
the name again when it fetches: a name whose answer changes in between (DNS rebinding)
needs GATEWAY_MEDIA_URL_HOSTS or an egress NetworkPolicy to be stopped. The operator
starts vLLM with redirects off (`VLLM_MEDIA_URL_ALLOW_REDIRECTS=0`), so that a public URL
cannot redirect it elsewhere (docs/security.md).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from modelserve.common.addresses import Address, refused_address, resolve
from modelserve.gateway.openai_errors import OpenAIError

# How long a host's addresses (or its failure to resolve) are trusted, and how many hosts
# are kept (all are forgotten when the table is full).
CACHE_SECONDS = 30.0
CACHE_SIZE = 4096

Resolver = Callable[[str], Awaitable[list[Address]]]


def media_urls(payload: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, URL) of every media URL among the chat messages' content parts: a part's
    field named `*_url` that holds a URL or an object with one (`{"url": …}`)."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return
    for m, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for p, part in enumerate(content):
            if not isinstance(part, dict):
                continue
            for key, value in part.items():
                if not key.endswith("_url"):
                    continue
                field = f"messages[{m}].content[{p}].{key}"
                if isinstance(value, str):
                    yield field, value
                elif isinstance(value, dict) and isinstance(value.get("url"), str):
                    yield f"{field}.url", value["url"]


@dataclasses.dataclass(frozen=True)
class MediaRules:
    remote: bool = True
    """http(s) media URLs may pass at all (False: `data:` URLs only)."""
    hosts: tuple[str, ...] = ()
    """The only hosts whose URLs pass (`name`, or `*.name` for its subdomains); empty:
    any host whose addresses are all public."""

    @classmethod
    def of(cls, remote: bool, hosts: str) -> MediaRules:
        names = (host.strip().lower().rstrip(".") for host in hosts.split(","))
        return cls(remote=remote, hosts=tuple(name for name in names if name))

    def listed(self, host: str) -> bool:
        return any(
            host == entry or (entry.startswith("*.") and host.endswith(entry[1:]))
            for entry in self.hosts
        )


def _is_data(url: str) -> bool:
    return url.split(":", 1)[0].strip().lower() == "data" if ":" in url else False


def shape_refusal(url: str, rules: MediaRules) -> str | None:
    """Why `url` may not be passed on whatever its host resolves to, or None."""
    if _is_data(url):
        return None
    if not rules.remote:
        return "only data: URLs are allowed for media here (GATEWAY_REMOTE_MEDIA=false)"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as error:
        return f"the URL is not valid: {error}"
    if parts.scheme.lower() not in ("http", "https"):
        return "a media URL must be a data: URL or an http or https URL"
    if "@" in parts.netloc:
        return "a media URL may not carry a user name or password"
    if not parts.hostname:
        return "the URL names no host"
    return None


class MediaUrls:
    """The check of one process, with its cache of resolved hosts."""

    def __init__(self, rules: MediaRules, resolver: Resolver = resolve) -> None:
        self.rules = rules
        self._resolve = resolver
        self._hosts: dict[str, tuple[float, str | None]] = {}

    async def check(self, payload: dict[str, Any]) -> None:
        """OpenAIError 400 for the first media URL of `payload` that may not pass."""
        for field, url in media_urls(payload):
            why = await self.refusal(url)
            if why is not None:
                raise OpenAIError(
                    400,
                    f"Invalid value for '{field}': {why}.",
                    code="media_url_not_allowed",
                    param=field,
                )

    async def refusal(self, url: str) -> str | None:
        rules = self.rules
        why = shape_refusal(url, rules)
        if why is not None or _is_data(url):
            return why
        host = (urlsplit(url.strip()).hostname or "").lower().rstrip(".")
        if rules.hosts:
            if rules.listed(host):
                return None
            return f"the host {host!r} is not among the media hosts allowed here"
        return await self._host_refusal(host)

    async def _host_refusal(self, host: str) -> str | None:
        now = time.monotonic()
        known = self._hosts.get(host)
        if known is not None and known[0] > now:
            return known[1]
        why = await self._addresses_refusal(host)
        if len(self._hosts) >= CACHE_SIZE:
            self._hosts.clear()
        self._hosts[host] = (now + CACHE_SECONDS, why)
        return why

    async def _addresses_refusal(self, host: str) -> str | None:
        try:
            addresses: list[Address] = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = await self._resolve(host)
            except (OSError, TimeoutError, UnicodeError) as error:
                return f"the host {host!r} cannot be resolved ({error})"
        for address in addresses:
            if refused_address(address):
                return (
                    f"the host {host!r} is (or resolves to) {address}, a loopback, "
                    "link-local, private or reserved address"
                )
        return None
