"""The power profile's job concurrency, read from the gateway (GET
/settings/power_profile with the jobs service's token) every JOBS_PROFILE_SECONDS. The
gateway keeps the profile in the ConfigMap `modelserve-power-profile`
(`modelserve.common.power_profiles`); asking it needs no Kubernetes access here."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from modelserve.common.tokens import TokenSigner
from modelserve.jobs.pacing.pacer import Pacer

logger = logging.getLogger(__name__)
SERVICE_NAME = "jobs"


class ProfileUnreadable(Exception):
    """The gateway could not say which profile holds (it is kept as it was)."""


def profile_concurrency(status: int, body: Any) -> int | None:
    """The profile's `max_concurrent_jobs` from the gateway's answer: None when no
    profile was chosen (`chosen` false) or the gateway has no cluster (503 `no_cluster`):
    the engine's own cap then holds. ProfileUnreadable for any other answer."""
    if status == 503 and isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("code") == "no_cluster":
            return None
    if status != 200 or not isinstance(body, dict):
        raise ProfileUnreadable(f"the gateway answered {status}")
    if body.get("chosen") is not True:
        return None
    jobs = body.get("max_concurrent_jobs")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ProfileUnreadable(f"max_concurrent_jobs is not a positive number: {jobs!r}")
    return jobs


class ProfileReader:
    def __init__(self, http: httpx.AsyncClient, gateway_url: str, signer: TokenSigner) -> None:
        self._http = http
        self._url = gateway_url.rstrip("/") + "/settings/power_profile"
        self._signer = signer

    async def read(self) -> int | None:
        token = self._signer.service_token(SERVICE_NAME)
        try:
            answer = await self._http.get(
                self._url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
            )
            body = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ProfileUnreadable(f"the gateway did not answer: {error}") from error
        return profile_concurrency(answer.status_code, body)

    async def follow(self, pacer: Pacer, every: float) -> None:
        """Read the profile into `pacer` every `every` seconds, forever; a failed read
        keeps what was read last."""
        while True:
            try:
                pacer.set_profile(await self.read())
            except ProfileUnreadable as error:
                logger.warning("reading the power profile: %s", error)
            await asyncio.sleep(every)
