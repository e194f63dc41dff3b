"""A model server that answers 500, hangs, streams slowly or falls sick, behind the real
gateway (with the contract service counting usage) and the operator's probe: what the
client gets, that other models are served meanwhile, what is charged, and how the
server's marking comes back when it is well again.

The server is `FaultyServer` (testbed/modelserve/testbed/faulty_server.py), one base URL
per model, behind `external` ModelServes in a namespace of this module's own.
tests/gateway/test_usage_accounting.py covers the same faults in scaled requests (a
candidate's 500, a hanging candidate); here they hit plain requests.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from kubernetes import client as k8s

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSigner
from modelserve.testbed.faulty_server import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    SECRET_TEXT,
    FaultyServer,
)
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import (
    RunningOperator,
    RunningService,
    gateway_kubeconfig,
    start_service,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

MODELS = ("fault-ok", "fault-error", "fault-hang", "fault-down")
# The gateway's longest silence from a model server (GATEWAY_UPSTREAM_READ_TIMEOUT).
READ_TIMEOUT = 3.0
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


def body_of(name: str, url: str) -> dict[str, Any]:
    """alice's external server, shared with team nlp (every user here is in it)."""
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {"runtime": "external", "model": {"servedName": name}, "external": {"url": url}},
    }


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultyServer]:
    with FaultyServer(MODELS) as server:
        yield server


@pytest.fixture(scope="module")
def served(
    crds: KubeCluster, operator: RunningOperator, kube_api: k8s.ApiClient, faulty: FaultyServer
) -> Iterator[str]:
    """The namespace where every model of `faulty` is a Ready ModelServe."""
    namespace = f"faults-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    try:
        bodies = [body_of(model, faulty.base_url(model)) for model in MODELS]
        crds.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(bodies))

        def ready() -> bool:
            items = crds.get_json("-n", namespace, "ms")["items"]
            return [(i.get("status") or {}).get("phase") for i in items] == ["Ready"] * len(MODELS)

        wait_for(ready, timeout=90, what="the faulty servers to be Ready")
        yield namespace
    finally:
        core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def platform(
    served: str, crds: KubeCluster, database_url: str, testbed_dir: Path, jwt_secret: str
) -> Iterator[tuple[RunningService, RunningService, str]]:
    """(gateway, contract service, the gateway's database URL), for this module."""
    logs = testbed_dir / "logs"
    with (
        fresh_schema(database_url, "faults_model_contract") as contract_schema,
        fresh_schema(database_url, "faults_model_gateway") as gateway_schema,
    ):
        contract = start_service(
            "contract",
            logs,
            {
                "CONTRACT_DATABASE_URL": schema_url(database_url, contract_schema),
                "JWT_SECRET": jwt_secret,
                "CONTRACT_INVENTORY_SECONDS": "0",
                "CONTRACT_DEFAULT_NAMESPACES": "*",
            },
        )
        gateway_database = schema_url(database_url, gateway_schema)
        try:
            gateway = start_service(
                "gateway",
                logs,
                {
                    "JWT_SECRET": jwt_secret,
                    "GATEWAY_DATABASE_URL": gateway_database,
                    "GATEWAY_ADMIN_USERNAME": "admin",
                    "GATEWAY_ADMIN_PASSWORD": "faults-admin-password",
                    "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
                    "GATEWAY_CONTRACT_URL": contract.url,
                    "GATEWAY_UPSTREAM_READ_TIMEOUT": str(READ_TIMEOUT),
                    "GATEWAY_USAGE_FLUSH_SECONDS": "0.2",
                    "GATEWAY_USAGE_RETRY_SECONDS": "0.2",
                    "GATEWAY_USAGE_RETRY_MAX_SECONDS": "1",
                },
            )
            try:
                yield gateway, contract, gateway_database
            finally:
                gateway.stop()
        finally:
            contract.stop()


@pytest.fixture
def well(faulty: FaultyServer) -> Iterator[FaultyServer]:
    """`faulty`, every model well again after the test."""
    yield faulty
    for model in MODELS:
        faulty.set(model, "ok")
    faulty.hanging.clear()


def chat(
    gateway: RunningService, signer: TokenSigner, user: str, model: str, **extra: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {signer.sign(user, teams=['nlp'])}"}
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": model, "messages": QUESTION, "max_tokens": 8, **extra},
        headers=headers,
        timeout=60,
    )


def routed(gateway: RunningService, signer: TokenSigner, user: str, model: str) -> httpx.Response:
    """The first answer that is not the gateway still learning of the model."""

    def attempt() -> httpx.Response | None:
        answer = chat(gateway, signer, user, model)
        learning = answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found"
        return None if learning else answer

    return wait_for(attempt, timeout=30, what=f"the gateway to route {model}")


def settled_usage(
    platform: tuple[RunningService, RunningService, str], signer: TokenSigner, user: str
) -> dict[str, Any]:
    """`user`'s usage today as the contract counted it, once the gateway's outbox has
    delivered every record (nothing waits in it)."""
    _, contract, gateway_database = platform

    def outbox_empty() -> bool:
        with psycopg.connect(gateway_database, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM usage_outbox").fetchone()
        return row is not None and row[0] == 0

    wait_for(outbox_empty, timeout=30, what="the usage outbox to be delivered")
    answer = httpx.get(
        f"{contract.url}/usage",
        params={"user": user, "period": "day"},
        headers={"Authorization": f"Bearer {signer.sign('root', roles=['admin'])}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    usage: dict[str, Any] = answer.json()
    return usage


def test_a_500_is_a_502_in_the_platform_s_shape_and_costs_no_tokens(
    platform: tuple[RunningService, RunningService, str],
    well: FaultyServer,
    signer: TokenSigner,
) -> None:
    gateway = platform[0]
    assert routed(gateway, signer, "eve", "fault-ok").status_code == 200
    assert routed(gateway, signer, "eve", "fault-error").status_code == 200
    well.set("fault-error", "error")
    for _ in range(3):
        failed = chat(gateway, signer, "eve", "fault-error")
        assert failed.status_code == 502, failed.text
        error = failed.json()["error"]
        assert error["code"] == "upstream_error"
        assert "answered 500" in error["message"]
        # What the server said stays in the gateway's log.
        assert SECRET_TEXT not in failed.text
        # Another model of the same server process is served meanwhile.
        assert chat(gateway, signer, "eve", "fault-ok").status_code == 200
    # Five answered requests are charged their tokens, each once; the three failed ones
    # are settled with none (their reservations given back), and counted as requests.
    usage = settled_usage(platform, signer, "eve")
    print(f"\nusage after 5 answers and 3 failures: {usage}")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        5 * PROMPT_TOKENS,
        5 * COMPLETION_TOKENS,
    )
    assert usage["requests"] == 8


def test_a_hung_model_server_is_a_504_after_the_read_timeout_and_others_are_served(
    platform: tuple[RunningService, RunningService, str],
    well: FaultyServer,
    signer: TokenSigner,
    figure: Callable[[str, float], None],
) -> None:
    gateway = platform[0]
    assert routed(gateway, signer, "hal", "fault-hang").status_code == 200
    well.set("fault-hang", "hang")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        hung = pool.submit(chat, gateway, signer, "hal", "fault-hang")
        assert well.hanging.wait(30), "the hung request never reached the server"
        # While it hangs: the gateway is healthy, and other models answer.
        assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200
        assert chat(gateway, signer, "hal", "fault-ok").status_code == 200
        answer = hung.result(timeout=60)
        figure("a hung model server's request answered 504 after", time.monotonic() - started)
    assert answer.status_code == 504, answer.text
    error = answer.json()["error"]
    assert error["code"] == "upstream_timeout"
    assert set(error) >= {"code", "message"}
    usage = settled_usage(platform, signer, "hal")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        2 * PROMPT_TOKENS,
        2 * COMPLETION_TOKENS,
    )


def test_a_slow_stream_is_passed_on_chunk_by_chunk_and_not_timed_out(
    platform: tuple[RunningService, RunningService, str],
    well: FaultyServer,
    signer: TokenSigner,
) -> None:
    gateway = platform[0]
    assert routed(gateway, signer, "sam", "fault-ok").status_code == 200
    # Each chunk leaves the server only once the one before reached this client, and the
    # pauses add up to twice the gateway's read timeout: a buffering gateway never sends
    # the first chunk, one that timed the stream as a whole would cut it off.
    pause = 2 * READ_TIMEOUT / well.chunks
    headers = {"Authorization": f"Bearer {signer.sign('sam', teams=['nlp'])}"}
    received: list[str] = []
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": "fault-ok", "messages": QUESTION, "stream": True, "max_tokens": 8},
        headers=headers,
        timeout=30,
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            received.append(line)
            if line == "data: [DONE]":
                break
            time.sleep(pause)
            well.next_chunk()
    assert len(received) == well.chunks + 1
    assert all(f'" {i}"' in received[i] for i in range(well.chunks))


def test_a_sick_server_is_marked_not_ready_and_comes_back_by_itself(
    platform: tuple[RunningService, RunningService, str],
    well: FaultyServer,
    crds: KubeCluster,
    served: str,
    signer: TokenSigner,
    figure: Callable[[str, float], None],
) -> None:
    gateway = platform[0]
    assert routed(gateway, signer, "sid", "fault-down").status_code == 200
    well.set("fault-down", "down")
    seen: dict[tuple[int, str], int] = {}

    def marked() -> httpx.Response | None:
        answer = chat(gateway, signer, "sid", "fault-down")
        key = (answer.status_code, answer.json().get("error", {}).get("code", ""))
        seen[key] = seen.get(key, 0) + 1
        return answer if answer.status_code == 503 else None

    # Until the operator's probe (every second here) marks it, requests fail with 502.
    refused = wait_for(marked, timeout=60, interval=0.2, what="the sick server to be marked")
    print(f"\nwhat clients saw while the server fell sick: {seen}")
    assert set(seen) <= {(502, "upstream_error"), (503, "model_not_ready")}
    assert refused.json()["error"]["code"] == "model_not_ready"
    assert refused.headers.get("retry-after")
    found = crds.get_json("ms", "fault-down", "-n", served)
    assert found["status"]["phase"] != "Ready"
    assert SECRET_TEXT not in yaml.safe_dump(found["status"])
    assert chat(gateway, signer, "sid", "fault-ok").status_code == 200

    well.set("fault-down", "ok")
    back = time.monotonic()

    def answered() -> bool:
        return chat(gateway, signer, "sid", "fault-down").status_code == 200

    wait_for(answered, timeout=60, interval=0.2, what="the server to be served again")
    figure("a sick model server served again after it was well", time.monotonic() - back)
    assert crds.get_json("ms", "fault-down", "-n", served)["status"]["phase"] == "Ready"
