"""The serving loop as tests drive it: a llama.cpp ModelServe whose pods really run, and
the two doors to it (the gateway's /v1 and Traefik's /{server-id}/v1)."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import httpx

from modelserve.common.modelserve import OWNER_LABEL
from modelserve.common.tokens import TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.traefik import RunningTraefik

OWNER = "alice"
SERVED_NAME = "smollm2-loop"


@dataclasses.dataclass(frozen=True)
class Loop:
    """A 2-replica llama.cpp server owned by `OWNER`, and the two doors to it."""

    kube: KubeCluster
    namespace: str
    name: str
    server_id: str
    gateway: RunningService
    traefik: RunningTraefik
    signer: TokenSigner

    def token(self, subject: str = OWNER, roles: tuple[str, ...] = ()) -> str:
        return self.signer.sign(subject, roles=roles)

    def headers(self, subject: str = OWNER) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject)}"}

    @property
    def route_url(self) -> str:
        """The seeds' per-server base: Traefik, /{server-id}/v1."""
        return f"{self.traefik.url}/{self.server_id}/v1"

    def pods(self) -> list[dict[str, Any]]:
        found = self.kube.get_json(
            "pods", "-n", self.namespace, "-l", f"llm.modelserve.io/modelserve={self.name}"
        )
        return list(found["items"])

    def ready_pods(self) -> list[dict[str, Any]]:
        return [
            pod
            for pod in self.pods()
            if not pod["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod["status"].get("conditions", [])
            )
        ]

    def server_pids(self) -> dict[str, int]:
        """Pod name → pid of its `server` process, as the pod runner started it."""
        assert self.kube.runner is not None
        found = {}
        for worker in list(self.kube.runner.workers.values()):
            process = worker.processes.get("server")
            if worker.pod["metadata"]["namespace"] != self.namespace or process is None:
                continue
            if process.pid is not None and process.running():
                found[worker.pod["metadata"]["name"]] = process.pid
        return found


def modelserve(name: str, uri: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: OWNER}},
        "spec": {
            "runtime": "llamacpp",
            "model": {"uri": uri, "format": "gguf", "servedName": SERVED_NAME},
            "replicas": replicas,
            # 2 slots each: a request never waits behind another in these tests.
            "args": ["--ctx-size", "2048", "--parallel", "2", "--threads", "1"],
            **spec,
        },
    }


def wait_ready(kube: KubeCluster, namespace: str, name: str, replicas: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        found: dict[str, Any] = kube.get_json("ms", name, "-n", namespace)
        status = found.get("status") or {}
        done = (
            status.get("phase") == "Ready"
            and status.get("readyReplicas") == replicas
            and status.get("observedGeneration") == found["metadata"]["generation"]
        )
        return found if done else None

    return wait_for(ready, timeout=180, what=f"{namespace}/{name} to be Ready")


class RequestStream:
    """Chat requests for `model` through the gateway, one after another, from a thread
    until the block ends: what a steady client sees during a rollout (every answer's
    status and the start of its body)."""

    def __init__(
        self,
        gateway: RunningService,
        model: str,
        headers: dict[str, str],
        *,
        timeout: float = 180,
    ) -> None:
        self.gateway, self.model, self.headers, self.timeout = gateway, model, headers, timeout
        self.answers: list[tuple[int, str]] = []
        self.durations: list[float] = []  # seconds, each answer's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                sent = time.perf_counter()
                answer = client.post(
                    f"{self.gateway.url}/v1/chat/completions",
                    json={
                        "model": self.model,
                        "messages": [{"role": "user", "content": "Say hi"}],
                        "max_tokens": 2,
                    },
                    headers=self.headers,
                )
                self.durations.append(time.perf_counter() - sent)
                self.answers.append((answer.status_code, answer.text[:300]))

    def __enter__(self) -> RequestStream:
        self._thread.start()
        wait_for(lambda: len(self.answers) >= 2, timeout=60, what="the stream to flow")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 30)

    def failures(self) -> list[tuple[int, str]]:
        return [answer for answer in self.answers if answer[0] != 200]
