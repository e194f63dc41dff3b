"""PostgreSQL restarted under gateway load: 4 clients send chat completions through the
real gateway (deciding with the contract service, both on a PostgreSQL of this module's
own) for a bounded time while the database stops and starts again. What the clients saw
is counted by status; the gateway and the contract service come back without a
restart; every answered request's usage is counted once, none lost, none twice.

tests/contract/test_outage.py stops PostgreSQL under the contract service alone (one
decision, 503); tests/gateway/test_usage_accounting.py stops the contract service. Here
the database goes away under both, with requests in flight.
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from kubernetes import client as k8s

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSigner
from modelserve.testbed.faulty_server import COMPLETION_TOKENS, PROMPT_TOKENS, FaultyServer
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import (
    RunningOperator,
    RunningService,
    gateway_kubeconfig,
    start_service,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import PostgresServer, start_postgres

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

MODEL = "pg-load"
CLIENTS = 4
LOAD_SECONDS = 30.0
# When the database stops (seconds into the load), and for how long.
STOP_AT, DOWN_FOR = 8.0, 6.0
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


@dataclass(frozen=True)
class Outcome:
    user: str
    status: int
    code: str  # the error's code ("" for a 200)
    began: float  # time.monotonic() when the request was sent
    ended: float  # and when its answer came


@dataclass(frozen=True)
class Platform:
    postgres: PostgresServer
    gateway: RunningService
    contract: RunningService
    gateway_database: str


@pytest.fixture(scope="module")
def model_server(
    crds: KubeCluster, operator: RunningOperator, kube_api: k8s.ApiClient
) -> Iterator[None]:
    """An OpenAI server that always answers, behind a Ready `external` ModelServe."""
    namespace = f"faults-pg-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    try:
        with FaultyServer((MODEL,)) as server:
            body = {
                "apiVersion": "llm.modelserve.io/v1alpha1",
                "kind": "ModelServe",
                "metadata": {"name": MODEL, "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
                "spec": {
                    "runtime": "external",
                    "model": {"servedName": MODEL},
                    "external": {"url": server.base_url(MODEL)},
                },
            }
            crds.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))

            def ready() -> bool:
                found = crds.get_json("ms", MODEL, "-n", namespace)
                return bool((found.get("status") or {}).get("phase") == "Ready")

            wait_for(ready, timeout=90, what=f"{MODEL} to be Ready")
            yield
    finally:
        core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def platform(
    model_server: None, crds: KubeCluster, tmp_path_factory: pytest.TempPathFactory, jwt_secret: str
) -> Iterator[Platform]:
    """The gateway and the contract service on a PostgreSQL of their own (the session's
    serves every other module, and is never stopped here)."""
    folder = tmp_path_factory.mktemp("postgres-restart")
    postgres = start_postgres(log_folder=folder)
    started: list[RunningService] = []
    try:
        contract = start_service(
            "contract",
            folder,
            {
                "CONTRACT_DATABASE_URL": postgres.create_database("contract"),
                "JWT_SECRET": jwt_secret,
                "CONTRACT_INVENTORY_SECONDS": "0",
                "CONTRACT_DEFAULT_NAMESPACES": "*",
            },
        )
        started.append(contract)
        gateway_database = postgres.create_database("gateway")
        gateway = start_service(
            "gateway",
            folder,
            {
                "JWT_SECRET": jwt_secret,
                "GATEWAY_DATABASE_URL": gateway_database,
                "GATEWAY_ADMIN_USERNAME": "admin",
                "GATEWAY_ADMIN_PASSWORD": "faults-admin-password",
                "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
                "GATEWAY_CONTRACT_URL": contract.url,
                "GATEWAY_USAGE_FLUSH_SECONDS": "0.2",
                "GATEWAY_USAGE_RETRY_SECONDS": "0.2",
                "GATEWAY_USAGE_RETRY_MAX_SECONDS": "1",
            },
        )
        started.append(gateway)
        yield Platform(postgres, gateway, contract, gateway_database)
    finally:
        for service in reversed(started):
            service.stop()
        postgres.stop()


def chat(platform: Platform, signer: TokenSigner, user: str) -> Outcome:
    headers = {"Authorization": f"Bearer {signer.sign(user, teams=['nlp'])}"}
    began = time.monotonic()
    try:
        answer = httpx.post(
            f"{platform.gateway.url}/v1/chat/completions",
            json={"model": MODEL, "messages": QUESTION, "max_tokens": 8},
            headers=headers,
            timeout=30,
        )
    except httpx.HTTPError as error:
        return Outcome(user, 0, type(error).__name__, began, time.monotonic())
    code = "" if answer.status_code == 200 else str(answer.json()["error"]["code"])
    return Outcome(user, answer.status_code, code, began, time.monotonic())


def usage_of(platform: Platform, signer: TokenSigner, user: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{platform.contract.url}/usage",
        params={"user": user, "period": "day"},
        headers={"Authorization": f"Bearer {signer.sign('root', roles=['admin'])}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    usage: dict[str, Any] = answer.json()
    return usage


def test_a_postgres_restart_under_load_loses_and_doubles_no_usage(
    platform: Platform, signer: TokenSigner, figure: Callable[[str, float], None]
) -> None:
    def first_answer() -> bool:
        return chat(platform, signer, "pg-warm").status == 200

    wait_for(first_answer, timeout=30, what=f"the gateway to route {MODEL}")
    users = [f"pg-{i}" for i in range(CLIENTS)]
    start = time.monotonic()
    deadline = start + LOAD_SECONDS

    def client(user: str) -> list[Outcome]:
        outcomes = []
        while time.monotonic() < deadline:
            outcomes.append(chat(platform, signer, user))
        return outcomes

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        loads = [pool.submit(client, user) for user in users]
        time.sleep(STOP_AT)
        stopped = time.monotonic()
        platform.postgres.pause()
        time.sleep(DOWN_FOR)
        platform.postgres.resume()
        back = time.monotonic()
        outcomes = [outcome for load in loads for outcome in load.result(timeout=LOAD_SECONDS + 90)]

    seen = collections.Counter((o.status, o.code) for o in outcomes)
    print(f"\nwhat {CLIENTS} clients saw in {LOAD_SECONDS:.0f} s: {dict(seen)}")
    failures = [o for o in outcomes if o.status != 200]
    # Fail closed: no answer without a decision, and every refusal a JSON error.
    assert {code for _, code in seen if code} <= {
        "contract_unavailable",
        "database_unavailable",
        "policy_store_unavailable",
    }, seen
    assert all(o.status == 503 for o in failures), seen
    if failures:
        print(
            f"failures: the first answered {min(o.ended for o in failures) - stopped:.1f} s "
            f"after the stop, the last {max(o.ended for o in failures) - back:+.1f} s from the "
            f"restart; each took at most {max(o.ended - o.began for o in failures):.1f} s"
        )
    during = sum(1 for o in outcomes if o.status == 200 and stopped < o.began and o.ended < back)
    print(f"requests sent and answered 200 while the database was down: {during}")
    figure(
        "first 200 answered after PostgreSQL came back",
        min(o.ended for o in outcomes if o.status == 200 and o.ended > back) - back,
    )
    # Both services recovered without a restart, and answer now.
    assert platform.gateway.process.running() and platform.contract.process.running()
    assert chat(platform, signer, "pg-after").status == 200

    # Every answered request's usage is in the database once: the tokens are exactly
    # those of the 200s, once the gateway's outbox has delivered everything.
    def outbox_empty() -> bool:
        with psycopg.connect(platform.gateway_database, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM usage_outbox").fetchone()
        return row is not None and row[0] == 0

    wait_for(outbox_empty, timeout=60, what="the usage outbox to be delivered")
    for user in users:
        answered = sum(1 for o in outcomes if o.user == user and o.status == 200)
        usage = usage_of(platform, signer, user)
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
            answered * PROMPT_TOKENS,
            answered * COMPLETION_TOKENS,
        ), (user, answered, usage)
        # A request refused before it reached the model server has no usage record.
        assert usage["requests"] == answered, (user, answered, usage)
    print(f"answered: {seen[(200, '')]}, each counted once")
