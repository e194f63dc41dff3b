"""A LoRA adapter served for real: a llama.cpp ModelServe whose pod runs llama-server on the
pod network loads a LoRA GGUF made for SmolLM2-135M (fetched from the platform store by
the pod's init step), and the gateway, with a contract service deciding, lists the adapter
as a model of its own and answers a request naming it from the base model's server with
the adapter applied."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL
from modelserve.common.tokens import ADMIN, TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.lora import write_lora
from modelserve.testbed.objectstores import PLATFORM_BUCKET, MinioServer
from modelserve.testbed.platform import RunningOperator, RunningService, gateway_kubeconfig
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import tag_as_recorded
from modelserve.testbed.testing_loop import wait_ready
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.kube, pytest.mark.minio, pytest.mark.postgres]

SECRET = "lora-serving-secret-of-at-least-32-bytes"
BASE = "smollm2-lora-base"
ADAPTER = "smollm2-pirate"
PROMPT = [{"role": "user", "content": "Say hi"}]


@dataclass(frozen=True)
class Adapted:
    """The platform's SmolLM2 server with one adapter, the gateway and the contract."""

    kube: KubeCluster
    namespace: str
    gateway: RunningService
    contract: RunningService
    signer: TokenSigner

    def headers(self, subject: str, roles: tuple[str, ...] = ()) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.signer.sign(subject, roles=roles)}"}

    def chat(self, subject: str, model: str, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": PROMPT, "max_tokens": 12, "temperature": 0, **extra}
        return httpx.post(
            f"{self.gateway.url}/v1/chat/completions",
            json=body,
            headers=self.headers(subject),
            timeout=120,
        )

    def server_models(self, subject: str) -> list[dict[str, Any]]:
        """GET /{server-id}/v1/models of the server (its id: the ModelServe's uid)."""
        uid = self.kube.get_json("ms", "smollm2", "-n", self.namespace)["metadata"]["uid"]
        answer = httpx.get(
            f"{self.gateway.url}/{uid}/v1/models", headers=self.headers(subject), timeout=30
        )
        assert answer.status_code == 200, answer.text
        data: list[dict[str, Any]] = answer.json()["data"]
        return data

    def pod_url(self) -> str:
        """The llama-server of the server's one pod, on the pod network."""
        (pod,) = self.kube.get_json(
            "pods", "-n", self.namespace, "-l", "llm.modelserve.io/modelserve=smollm2"
        )["items"]
        return f"http://{pod['status']['podIP']}:8080"


def place_adapter(store: MinioServer, folder: Path) -> str:
    """The LoRA GGUF in the platform store as a download leaves it (digest tag and all)."""
    adapter = write_lora(Path(ensure_runtime().model), folder / "pirate.gguf")
    model_id = str(uuid.uuid4())
    key = f"models/{model_id}/pirate.gguf"
    client = store.client()
    client.fput_object(PLATFORM_BUCKET, key, str(adapter))
    digest = hashlib.sha256(adapter.read_bytes()).hexdigest()
    tag_as_recorded(client, PLATFORM_BUCKET, key, digest, model_id)
    return f"s3://{PLATFORM_BUCKET}/{key}"


@pytest.fixture(scope="module")
def adapted(
    crds: KubeCluster,
    operator: RunningOperator,
    platform_store: MinioServer,
    smollm2_uri: str,
    database_url: str,
    testbed_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Adapted]:
    namespace = f"lora-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", namespace)
    adapter_uri = place_adapter(platform_store, tmp_path_factory.mktemp("lora"))
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    logs = testbed_dir / "logs"
    contract_settings = {"JWT_SECRET": SECRET, "CONTRACT_INVENTORY_SECONDS": "0"}
    with service_on_fresh_schema(
        "contract", database_url, logs, contract_settings, prefix="lora_contract"
    ) as contract:
        settings = {
            "JWT_SECRET": SECRET,
            "GATEWAY_ADMIN_PASSWORD": "lora-serving-admin-password",
            "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
            "GATEWAY_WATCH_NAMESPACES": namespace,
            # Everyone may use the platform's servers: the contract alone decides.
            "GATEWAY_PLATFORM_NAMESPACES": namespace,
            "GATEWAY_CONTRACT_URL": contract.url,
        }
        with service_on_fresh_schema("gateway", database_url, logs, settings, prefix="lora") as gw:
            manifest = {
                "apiVersion": "llm.modelserve.io/v1alpha1",
                "kind": "ModelServe",
                "metadata": {"name": "smollm2", "labels": {OWNER_LABEL: "root"}},
                "spec": {
                    "runtime": "llamacpp",
                    "model": {"uri": smollm2_uri, "format": "gguf", "servedName": BASE},
                    "adapters": [{"name": ADAPTER, "uri": adapter_uri}],
                    "replicas": 1,
                    "args": ["--ctx-size", "2048", "--parallel", "2", "--threads", "1"],
                },
            }
            try:
                crds.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(manifest))
                wait_ready(crds, namespace, "smollm2", 1)
                bed = Adapted(crds, namespace, gw, contract, signer)

                def routed() -> bool:
                    return bed.chat("root", ADAPTER).status_code == 200

                wait_for(routed, timeout=60, what="the gateway to route the adapter")
                yield bed
            finally:
                crds.kubectl("delete", "namespace", namespace, "--wait=false")


def content(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    text: str = answer.json()["choices"][0]["message"]["content"]
    return text


def test_the_server_loads_the_adapter_the_init_step_fetched(adapted: Adapted) -> None:
    """llama-server lists the adapter from the pod's model folder, at scale 0 until a
    request asks for it."""
    (loaded,) = httpx.get(f"{adapted.pod_url()}/lora-adapters", timeout=30).json()
    assert loaded["id"] == 0
    assert loaded["path"].endswith("/adapters/smollm2-pirate.gguf")
    assert loaded["scale"] == 0.0


def test_v1_models_lists_the_adapter_as_a_model_of_its_base(adapted: Adapted) -> None:
    answer = httpx.get(
        f"{adapted.gateway.url}/v1/models", headers=adapted.headers("alice"), timeout=30
    )
    assert answer.status_code == 200, answer.text
    listed = {model["id"]: model for model in answer.json()["data"]}
    assert set(listed) == {BASE, ADAPTER}
    assert "parent" not in listed[BASE]
    assert (listed[ADAPTER]["parent"], listed[ADAPTER]["root"]) == (BASE, BASE)
    one = httpx.get(
        f"{adapted.gateway.url}/v1/models/{ADAPTER}", headers=adapted.headers("alice"), timeout=30
    )
    assert one.status_code == 200 and one.json()["parent"] == BASE, one.text
    # The server's own listing: its model, then its adapter, as /v1/models lists them.
    on_server = adapted.server_models("alice")
    assert [model["id"] for model in on_server] == [BASE, ADAPTER]
    assert "parent" not in on_server[0]
    assert (on_server[1]["parent"], on_server[1]["root"]) == (BASE, BASE)
    assert on_server[1]["state"] == listed[ADAPTER]["state"]


def test_a_request_for_the_adapter_is_answered_with_it_applied(adapted: Adapted) -> None:
    """Greedy answers: the adapter's differ from the model's and are what llama-server
    itself answers with that adapter at scale 1; the model answers unchanged before and
    after (no prompt cached under the adapter is reused), and a client's own `lora` on
    the model applies nothing."""
    base = content(adapted.chat("alice", BASE))
    with_adapter = content(adapted.chat("alice", ADAPTER))
    assert with_adapter != base
    assert content(adapted.chat("alice", BASE)) == base
    assert content(adapted.chat("alice", BASE, lora=[{"id": 0, "scale": 1.0}])) == base

    direct = httpx.post(
        f"{adapted.pod_url()}/v1/chat/completions",
        json={
            "messages": PROMPT,
            "max_tokens": 12,
            "temperature": 0,
            "lora": [{"id": 0, "scale": 1.0}],
            "cache_prompt": False,
        },
        timeout=120,
    )
    assert content(direct) == with_adapter


def test_the_contracts_model_allowlist_holds_for_the_adapters_name(adapted: Adapted) -> None:
    """carol's contract allows the model but not its adapter: the adapter is not listed
    for her (by /v1/models nor by the server's own /models), and a request for it is
    refused as for any model she may not use."""
    put = httpx.put(
        f"{adapted.contract.url}/contracts/user/carol",
        json={"models": [BASE]},
        headers=adapted.headers("root", (ADMIN,)),
        timeout=30,
    )
    assert put.status_code == 200, put.text
    listed = httpx.get(
        f"{adapted.gateway.url}/v1/models", headers=adapted.headers("carol"), timeout=30
    ).json()["data"]
    assert [model["id"] for model in listed] == [BASE]
    one = httpx.get(
        f"{adapted.gateway.url}/v1/models/{ADAPTER}", headers=adapted.headers("carol"), timeout=30
    )
    assert one.status_code == 404, one.text
    assert [model["id"] for model in adapted.server_models("carol")] == [BASE]

    refused = adapted.chat("carol", ADAPTER)
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "model_not_allowed"
    assert ADAPTER in error["message"]
    assert content(adapted.chat("carol", BASE))
