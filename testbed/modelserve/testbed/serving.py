"""The platform's core loop, as `make dev` runs it for SmolLM2: download the model through
the download service, `POST /serve` it on the llama.cpp runtime (the CPU node), and wait
until its pods really answer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from modelserve.testbed.polling import wait_for

# How long a server may stay Failed (restarting a container) before the loop gives up.
FAILED_FOR = 60.0


class ServingError(RuntimeError):
    """A step of the loop failed; the message carries what the service answered."""


@dataclass(frozen=True)
class ServedModel:
    server_id: str
    name: str
    namespace: str
    served_name: str


def download_model(download_url: str, token: str, model_uuid: str, timeout: float = 300) -> None:
    """Copy the upstream model into the platform store, and wait until it is verified."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=download_url, headers=headers, timeout=30) as client:
        asked = client.post(f"/download/{model_uuid}")
        if asked.status_code not in (200, 202):
            raise ServingError(f"POST /download/{model_uuid}: {asked.status_code} {asked.text}")

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(f"/status/{model_uuid}").json()
            return job if job["state"] in ("ready", "failed", "cancelled") else None

        job = wait_for(finished, timeout=timeout, what=f"the download of {model_uuid}")
    if job["state"] != "ready":
        raise ServingError(f"the download of {model_uuid} ended {job['state']}: {job}")


def serve(
    gateway_url: str,
    token: str,
    request: dict[str, Any],
    timeout: float = 300,
) -> ServedModel:
    """`POST /serve` with `request`, then wait until GET /status/{id} says Ready."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=30) as client:
        created = client.post("/serve", json=request)
        if created.status_code != 201:
            raise ServingError(f"POST /serve: {created.status_code} {created.text}")
        server: dict[str, Any] = created.json()
        server_id = server["server_id"]

        failing_since: list[float] = []

        def ready() -> dict[str, Any] | None:
            found: dict[str, Any] = client.get(f"/status/{server_id}").json()
            if found.get("status") != "Failed":
                failing_since.clear()
            elif not failing_since:
                failing_since.append(time.monotonic())
            elif time.monotonic() - failing_since[0] > FAILED_FOR:
                # A container that failed once is restarted; one that keeps failing will not do.
                raise ServingError(f"server {server_id} failed: {found.get('message')}")
            return found if found.get("status") == "Ready" else None

        status = wait_for(ready, timeout=timeout, what=f"server {server_id} to become Ready")
    return ServedModel(server_id, status["name"], status["namespace"], status["model"])
