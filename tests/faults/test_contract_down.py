"""The contract service killed (SIGKILL) and started again a minute later, with the gateway,
the download service, the operator and the contract's admission webhook running.

What users see meanwhile: inference goes on for a few seconds, decided in the gateway's
process from the caller's limits as last read and the quota leased to it, until their
time (CONTRACT_LEASE_SECONDS, 5 s here) runs out; then it is refused, fail closed, 503
`contract_unavailable` with Retry-After (nothing is answered that was not checked against
a contract read within that time); `POST /serve` is refused at once; `kubectl apply` of a
ModelServe is refused by the API server (the webhook's `failurePolicy: Fail`), while
`kubectl delete` passes (`failurePolicy: Ignore`). Usage of a stream that ends during the
outage, and of the requests answered then, waits in the gateway's outbox. Once the
service is back, with no other restart: requests, serving and the webhook work again,
and every answered request is counted exactly once by the contract service.

Builds on tests/gateway/test_usage_accounting.py's
`test_usage_survives_a_contract_outage_and_a_killed_gateway` (the outbox across an outage
and a killed gateway, a replayed record counted once), which it does not repeat: this one
adds what each door answers during the outage, the webhook, the exact count of everything
answered before, during and after it, and the time to recover.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.metered_server import COMPLETION_TOKENS, PROMPT_TOKENS, MeteredServer
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import (
    RunningContract,
    RunningOperator,
    RunningService,
    build_external_server,
    gateway_kubeconfig,
    start_contract,
    start_service,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio]

# How long the contract service stays down, as the issue asks: a minute.
OUTAGE_SECONDS = 60.0
# How long the gateway decides from what it last read of the contract service.
LEASE_SECONDS = 5.0
MODEL = "down-words"
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]
ADMIN_PASSWORD = "faults-admin-password"


@pytest.fixture
def model_server() -> Iterator[MeteredServer]:
    with MeteredServer((MODEL,), stream_chunks=40, chunk_seconds=0.1) as server:
        yield server


@pytest.fixture
def download(
    database_url: str,
    upstream_store: MinioServer,
    platform_store: MinioServer,
    upstream_bucket: str,
    platform_bucket: str,
    testbed_dir: Path,
    jwt_secret: str,
    signer: TokenSigner,
    contract: RunningContract,
) -> Iterator[tuple[RunningService, dict[str, Any]]]:
    """The download service (asking this test's contract service about non-admins), with
    one small model downloaded through it; the service and the model's record."""
    upstream_store.put(upstream_bucket, "tiny/Tiny-Down.Q4_0.gguf", b"GGUF" + bytes(4096))
    settings = {
        "JWT_SECRET": jwt_secret,
        "DOWNLOAD_UPSTREAM_ENDPOINT": upstream_store.endpoint,
        "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream_store.access_key,
        "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream_store.secret_key,
        "DOWNLOAD_UPSTREAM_BUCKETS": upstream_bucket,
        "DOWNLOAD_PLATFORM_ENDPOINT": platform_store.endpoint,
        "DOWNLOAD_PLATFORM_ACCESS_KEY": platform_store.access_key,
        "DOWNLOAD_PLATFORM_SECRET_KEY": platform_store.secret_key,
        "DOWNLOAD_PLATFORM_BUCKET": platform_bucket,
        "DOWNLOAD_WORKER_ID": f"worker-{uuid.uuid4().hex[:6]}",
        "DOWNLOAD_POLL_SECONDS": "1",
        "DOWNLOAD_CONTRACT_URL": contract.service.url,
    }
    with fresh_schema(database_url, "faults_download") as schema:
        service = start_service(
            "download",
            testbed_dir / "logs",
            {"DOWNLOAD_DATABASE_URL": schema_url(database_url, schema), **settings},
        )
        try:
            headers = {"Authorization": f"Bearer {signer.sign('root', roles=('admin',))}"}
            with httpx.Client(base_url=service.url, headers=headers, timeout=30) as admin:
                source = {"key": "tiny/Tiny-Down.Q4_0.gguf", "name": "Tiny-Down"}
                started = admin.post("/downloads", json=source)
                assert started.status_code == 202, started.text

                def ready() -> list[dict[str, Any]]:
                    records: list[dict[str, Any]] = admin.get("/models").json()
                    return records

                (record,) = wait_for(ready, timeout=60, what="the model to be downloaded")
            yield service, record
        finally:
            service.stop()


@pytest.fixture
def contract(
    crds: KubeCluster,
    namespace: str,
    database_url: str,
    testbed_dir: Path,
    jwt_secret: str,
    platform_bucket: str,
) -> Iterator[RunningContract]:
    """The contract service with its webhooks, for this test's namespace only (the
    webhooks fail closed: registered for every namespace, this outage would refuse the
    other tests' ModelServes). The cluster's admin (system:masters) is a platform admin."""
    with fresh_schema(database_url, "faults_contract") as schema:
        running = start_contract(
            crds,
            testbed_dir,
            schema_url(database_url, schema),
            {
                "JWT_SECRET": jwt_secret,
                "CONTRACT_INVENTORY_SECONDS": "0",
                "CONTRACT_DEFAULT_NAMESPACES": "*",
                "CONTRACT_ADMIN_GROUPS": "modelserve:admins,system:masters",
                "CONTRACT_MODEL_PREFIX": f"s3://{platform_bucket}/models/",
                "CONTRACT_LEASE_SECONDS": str(LEASE_SECONDS),
            },
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            name=f"faults-{namespace}",
        )
        try:
            yield running
        finally:
            running.stop(crds)


@pytest.fixture
def gateway(
    crds: KubeCluster,
    namespace: str,
    database_url: str,
    testbed_dir: Path,
    jwt_secret: str,
    contract: RunningContract,
    download: tuple[RunningService, dict[str, Any]],
) -> Iterator[tuple[RunningService, str]]:
    """The gateway, deciding with the contract service and retrying usage quickly; the
    gateway and its database URL."""
    with fresh_schema(database_url, "faults_gateway") as schema:
        database = schema_url(database_url, schema)
        service = start_service(
            "gateway",
            testbed_dir / "logs",
            {
                "JWT_SECRET": jwt_secret,
                "GATEWAY_DATABASE_URL": database,
                "GATEWAY_ADMIN_USERNAME": "admin",
                "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "GATEWAY_CONTRACT_URL": contract.service.url,
                "GATEWAY_DOWNLOAD_URL": download[0].url,
                "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
                "GATEWAY_NAMESPACE": namespace,
                "GATEWAY_USAGE_FLUSH_SECONDS": "0.2",
                "GATEWAY_USAGE_RETRY_SECONDS": "0.2",
                "GATEWAY_USAGE_RETRY_MAX_SECONDS": "1",
                "GATEWAY_USAGE_LEASE_SECONDS": "2",
            },
        )
        try:
            yield service, database
        finally:
            service.stop()


def since(began: float) -> float:
    return time.monotonic() - began


def outbox_ids(database: str) -> list[str]:
    with psycopg.connect(database, autocommit=True) as conn:
        return [str(row[0]) for row in conn.execute("SELECT id FROM usage_outbox").fetchall()]


def external(name: str, namespace: str, url: str) -> dict[str, Any]:
    return build_external_server(name, namespace, owner="ann", served_name=MODEL, url=url)


def kubectl_apply(cluster: KubeCluster, body: dict[str, Any]) -> str | None:
    """Apply `body` as the cluster's admin: None when it was accepted, else kubectl's
    error."""
    try:
        cluster.kubectl("apply", stdin=yaml.safe_dump(body))
    except RuntimeError as error:
        return str(error)
    return None


def test_a_minute_without_the_contract_service_fails_closed_and_loses_no_usage(
    crds: KubeCluster,
    namespace: str,
    operator: RunningOperator,
    model_server: MeteredServer,
    contract: RunningContract,
    download: tuple[RunningService, dict[str, Any]],
    gateway: tuple[RunningService, str],
    signer: TokenSigner,
    figure: Callable[[str, float], None],
) -> None:
    service, (gateway_service, gateway_database) = contract.service, gateway
    record = download[1]
    crds.kubectl("apply", stdin=yaml.safe_dump(external(MODEL, namespace, model_server.url)))
    assert kubectl_apply(crds, external("doomed", namespace, model_server.url)) is None
    ann = {"Authorization": f"Bearer {signer.sign('ann')}"}
    admin = {"Authorization": f"Bearer {signer.sign('root', roles=('admin',))}"}
    http = httpx.Client(base_url=gateway_service.url, timeout=60)

    def chat(**body: Any) -> httpx.Response:
        payload = {"model": MODEL, "messages": QUESTION, "max_tokens": 8, **body}
        return http.post("/v1/chat/completions", json=payload, headers=ann)

    def routed() -> httpx.Response | None:
        answer = chat()
        return answer if answer.status_code == 200 else None

    def serve() -> httpx.Response:
        return http.post("/serve", json={"model_uuid": record["id"], "replicas": 0}, headers=ann)

    def counted() -> dict[str, Any]:
        answer = httpx.get(
            f"{service.url}/usage", params={"user": "ann", "period": "day"}, headers=admin
        )
        assert answer.status_code == 200, answer.text
        usage: dict[str, Any] = answer.json()
        return usage

    answered = 0
    with http:
        wait_for(routed, timeout=60, what="the gateway to route the model server")
        answered += 1
        for _ in range(2):
            assert chat().status_code == 200
            answered += 1
        # Delivered while all is well (the outbox sends within a second).
        wait_for(lambda: counted()["requests"] == answered, timeout=30, what="ann's first usage")
        # A stream decided before the outage, ending during it: its usage waits.
        request = http.build_request(
            "POST",
            "/v1/chat/completions",
            json={"model": MODEL, "messages": QUESTION, "max_tokens": 64, "stream": True},
            headers=ann,
        )
        stream = http.send(request, stream=True)
        assert stream.status_code == 200

        service.process.kill()
        down_since = time.monotonic()
        assert stream.read().rstrip().endswith(b"data: [DONE]")
        stream.close()
        answered += 1

        # Inference: decided from what the gateway last read (ann has no limits: her
        # requests need no grant) until that is LEASE_SECONDS old, then fail closed: 503
        # in OpenAI's error shape, retry in a second.
        late: list[httpx.Response] = []

        def refused_now() -> httpx.Response | None:
            answer = chat()
            if answer.status_code == 200:
                late.append(answer)
                return None
            return answer

        refused = wait_for(
            refused_now, timeout=LEASE_SECONDS + 10, what="inference to be refused", interval=0.2
        )
        figure("contract service down: SIGKILL to the first refused request", since(down_since))
        assert since(down_since) < LEASE_SECONDS + 2
        answered += len(late)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "contract_unavailable"
        # Serving: fail closed too, in the platform's error shape.
        not_served = serve()
        assert not_served.status_code == 503, not_served.text
        assert not_served.json()["error"]["code"] == "contract_unavailable"
        # Liveness asks nothing of it: /health with a token answers as without one.
        alive = http.get("/health", headers=ann)
        assert alive.status_code == 200 and alive.json()["status"] == "ok", alive.text
        # kubectl: create refused by the API server (the webhook fails closed), delete
        # let through (it fails open: nobody is kept from stopping a server).
        refusal = kubectl_apply(crds, external("late", namespace, model_server.url))
        assert refusal is not None and "failed calling webhook" in refusal, refusal
        crds.kubectl("delete", "ms", "doomed", "-n", namespace, "--wait=false")

        # The usage of the stream and of the requests answered after the kill is in the
        # outbox, tried again and again, not dropped.
        def all_waiting() -> list[str] | None:
            ids = sorted(outbox_ids(gateway_database))
            return ids if len(ids) == 1 + len(late) else None

        waiting = wait_for(
            all_waiting, timeout=30, what="the usage answered during the outage in the outbox"
        )

        # The rest of the minute: every request still refused the same way.
        while time.monotonic() - down_since < OUTAGE_SECONDS:
            assert chat().status_code == 503
            time.sleep(5)
        assert sorted(outbox_ids(gateway_database)) == waiting

        back = time.monotonic()
        service.start()  # the same program, ports and webhook registration as before
        figure("contract service down 60 s: restart to answering /health", since(back))
        wait_for(routed, timeout=60, what="a request allowed again", interval=0.1)
        answered += 1
        figure("contract service down 60 s: restart to the first allowed request", since(back))
        wait_for(
            lambda: kubectl_apply(crds, external("late", namespace, model_server.url)) is None,
            timeout=60,
            what="the webhook to admit a ModelServe again",
            interval=0.2,
        )
        figure("contract service down 60 s: restart to the webhook admitting again", since(back))
        served = serve()
        assert served.status_code in (200, 201), served.text
        stopped = http.delete(f"/stop/{served.json()['server_id']}", headers=ann)
        assert stopped.status_code == 200, stopped.text
        wait_for(lambda: not outbox_ids(gateway_database), timeout=60, what="the outbox to empty")
        figure("contract service down 60 s: restart to the outbox delivered", since(back))
        for _ in range(2):
            assert chat().status_code == 200
            answered += 1

    # Every answered request counted once, with its tokens; none of the refused ones.
    def all_counted() -> dict[str, Any] | None:
        usage = counted()
        return usage if usage["requests"] >= answered else None

    usage = wait_for(
        all_counted,
        timeout=30,
        what=f"{answered} requests of ann to be counted",
    )
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (
        answered,
        answered * PROMPT_TOKENS,
        answered * COMPLETION_TOKENS,
    )
    assert not outbox_ids(gateway_database)
