"""Health of `external` servers: one loop probes each of them every interval.

A loop for the whole operator rather than a kopf daemon or timer per resource:
those need a finalizer, and an external server leaves nothing to clean up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import httpx

from modelserve.common.modelserve import ModelServe
from modelserve.operator.status import ProbeResult

Key = tuple[str, str]
logger = logging.getLogger(__name__)


async def probe(
    http: httpx.AsyncClient, url: str, served_name: str, api_key: str | None
) -> ProbeResult:
    """GET {url}/models: the server answers and lists the model it is meant to serve."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = await http.get(f"{url.rstrip('/')}/models", headers=headers)
    except httpx.TimeoutException:
        return ProbeResult(False, f"{url} did not answer in time")
    except httpx.TransportError as error:
        return ProbeResult(False, f"{url} is unreachable: {error or type(error).__name__}")
    if response.status_code in (401, 403):
        return ProbeResult(False, f"{url} refused the API key ({response.status_code})")
    if response.status_code != 200:
        return ProbeResult(False, f"{url}/models answered {response.status_code}")
    try:
        served = {model.get("id") for model in response.json().get("data", [])}
    except (ValueError, AttributeError):
        return ProbeResult(False, f"{url}/models did not answer an OpenAI model list")
    if served_name not in served:
        listed = ", ".join(sorted(str(name) for name in served)) or "none"
        return ProbeResult(False, f"{url} does not serve {served_name!r} (it serves: {listed})")
    return ProbeResult(True, f"{url} serves {served_name!r}")


class ExternalProber:
    """Keeps the `external` ModelServes to probe; calls `changed` when a result changes."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        interval: float,
        api_key: Callable[[ModelServe], Awaitable[str | None]],
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
        result = await probe(
            self._http, ms.spec.external.url, ms.served_name, await self._api_key(ms)
        )
        key = (ms.namespace, ms.name)
        if self._targets.get(key) is not ms:
            return  # changed or deleted while we probed
        if self.results.get(key) != result:
            self.results[key] = result
            self._changed(key)

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
