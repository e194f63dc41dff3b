"""Health of `external` servers: one loop probes each of them every interval.

A loop for the whole operator rather than a kopf daemon or timer per resource:
those need a finalizer, and an external server leaves nothing to clean up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from modelserve.common.modelserve import (
    API_KEY_HOSTS_ANNOTATION,
    API_KEY_LABEL,
    ModelServe,
    holds_api_key,
    key_may_go_to,
)
from modelserve.operator.status import ProbeResult

Key = tuple[str, str]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiKey:
    """The key to probe with (None: none), or why the key the spec names is not sent."""

    value: str | None = None
    refused: str | None = None


def api_key_for(secret: Mapping[str, Any] | None, namespace: str, key: str, url: str) -> ApiKey:
    """The API key in `key` of `secret` for a probe of `url`: only from a Secret given to
    ModelServes (labelled), and only to a host the Secret names (annotated)."""
    if secret is None:
        return ApiKey()
    meta = secret.get("metadata") or {}
    name = meta.get("name", "")
    if not holds_api_key(meta.get("labels")):
        logger.warning(
            "the Secret %s/%s is not labelled %s=true: probing without its key",
            namespace,
            name,
            API_KEY_LABEL,
        )
        return ApiKey()
    if not key_may_go_to(meta.get("annotations"), url):
        return ApiKey(
            refused=f"the API key of Secret {name} is not sent to {url}: the Secret's "
            f"{API_KEY_HOSTS_ANNOTATION} annotation does not name that host"
        )
    encoded = (secret.get("data") or {}).get(key)
    return ApiKey(base64.b64decode(encoded).decode().strip() if encoded is not None else None)


async def probe(
    http: httpx.AsyncClient, url: str, served_name: str, api_key: str | None
) -> ProbeResult:
    """GET {url}/models: the server answers and lists the model it is meant to serve.

    The message is fixed text and the status code: nothing of what the server answers
    goes into the status, which the ModelServe's owner reads (a server could echo the key
    it was sent). Redirects are not followed.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = await http.get(
            f"{url.rstrip('/')}/models", headers=headers, follow_redirects=False
        )
    except httpx.TimeoutException:
        return ProbeResult(False, f"{url} did not answer in time")
    except httpx.TransportError as error:
        return ProbeResult(False, f"{url} is unreachable ({type(error).__name__})")
    if response.status_code in (401, 403):
        return ProbeResult(False, f"{url} refused the API key ({response.status_code})")
    if response.status_code != 200:
        return ProbeResult(False, f"{url}/models answered {response.status_code}")
    try:
        served = {model.get("id") for model in response.json().get("data", [])}
    except (ValueError, AttributeError):
        return ProbeResult(False, f"{url}/models did not answer an OpenAI model list")
    if served_name not in served:
        return ProbeResult(False, f"{url}/models answered 200 without the served name")
    return ProbeResult(True, f"{url} serves {served_name!r}")


class ExternalProber:
    """Keeps the `external` ModelServes to probe; calls `changed` when a result changes."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        interval: float,
        api_key: Callable[[ModelServe], Awaitable[ApiKey]],
        changed: Callable[[Key], None],
    ) -> None:
        self._http = http
        self._interval = interval
        self._api_key = api_key
        self._changed = changed
        self._targets: dict[Key, ModelServe] = {}
        self._wake = asyncio.Event()
        self.results: dict[Key, ProbeResult] = {}

    def track(self, ms: ModelServe) -> None:
        key = (ms.namespace, ms.name)
        known = self._targets.get(key)
        self._targets[key] = ms
        if known is None or _probed(known) != _probed(ms):
            # A new server, or another URL, name or key: the last result says nothing of
            # it. A change elsewhere in the spec (scaling defaults, say) keeps the result,
            # so the model does not drop out of service while it is probed again.
            self.results.pop(key, None)
            self._wake.set()

    def forget(self, namespace: str, name: str) -> None:
        self._targets.pop((namespace, name), None)
        self.results.pop((namespace, name), None)

    async def probe_all(self) -> None:
        targets = list(self._targets.values())
        await asyncio.gather(*(self._probe_one(ms) for ms in targets))

    async def _probe_one(self, ms: ModelServe) -> None:
        assert ms.spec.external is not None  # only external servers are tracked
        key = await self._api_key(ms)
        if key.refused is not None:
            result = ProbeResult(False, key.refused)
        else:
            result = await probe(self._http, ms.spec.external.url, ms.served_name, key.value)
        target = (ms.namespace, ms.name)
        if self._targets.get(target) is not ms:
            return  # changed or deleted while we probed
        if self.results.get(target) != result:
            self.results[target] = result
            self._changed(target)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.probe_all()
            except Exception:
                logger.exception("probing external servers failed; retrying next round")
            with contextlib.suppress(TimeoutError):  # the interval passed: probe again
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)


def _probed(ms: ModelServe) -> tuple[object, str]:
    """What a probe of an external server depends on."""
    return ms.spec.external, ms.served_name
