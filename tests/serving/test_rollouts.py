"""Set-active rollouts on the real serving loop: a server's model replaced under a steady
stream of requests, and put back by the operator when the new one crashes.

Real: the operator, a gateway process, the API server's Deployment controller replacing
pods one at a time, and llama.cpp servers that the pod runner starts on the pod network
(a truncated GGUF really fails to load). The change is made the way the gateway's
`POST /models/set_active` makes it (spec.model.uri and the two annotations), so that
this module tests the operator's and the gateway's part without the registry; the
registry's own workflow is in test_registry_workflow.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from modelserve.common.rollouts import MODEL_VERSION_ANNOTATION, ROLLOUT_ANNOTATION
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator, gateway_kubeconfig
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import place_model_version
from modelserve.testbed.testing_loop import OWNER, RequestStream, modelserve, wait_ready
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

SECRET = "rollout-tests-secret-of-at-least-32-bytes"
HOLD_SECONDS = 120


@pytest.fixture(scope="module")
def versions(platform_store: MinioServer) -> dict[str, str]:
    """Three versions of one model in the platform store: two good copies and one whose
    weights are cut short (its header reads; llama.cpp fails to load it)."""
    model = ensure_runtime().model
    return {
        "v1": place_model_version(platform_store, model, "rollout-v1"),
        "v2": place_model_version(platform_store, model, "rollout-v2"),
        "bad": place_model_version(
            platform_store, model, "rollout-bad", keep_bytes=model.stat().st_size // 2
        ),
    }


@pytest.fixture(scope="module")
def bed(
    crds: KubeCluster, operator: RunningOperator, database_url: str, testbed_dir: Path
) -> Iterator[dict[str, Any]]:
    namespace = f"roll-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", namespace)
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "rollout-tests-admin-password",
        "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
        "GATEWAY_WATCH_NAMESPACES": namespace,
        "GATEWAY_HOLD_TIMEOUT_SECONDS": str(HOLD_SECONDS),
    }
    try:
        with service_on_fresh_schema(
            "gateway", database_url, testbed_dir / "logs", settings, prefix="roll"
        ) as gateway:
            yield {"namespace": namespace, "gateway": gateway}
    finally:
        crds.kubectl("delete", "namespace", namespace, "--wait=false")


def headers() -> dict[str, str]:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return {"Authorization": f"Bearer {signer.sign(OWNER)}"}


def set_model(kube: KubeCluster, namespace: str, name: str, uri: str, version: str) -> str:
    """What the gateway's set_active does to a server; the change's id."""
    change = uuid.uuid4().hex[:8]
    patch = {
        "metadata": {
            "annotations": {MODEL_VERSION_ANNOTATION: version, ROLLOUT_ANNOTATION: change}
        },
        "spec": {"model": {"uri": uri}},
    }
    kube.kubectl("patch", f"ms/{name}", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    return change


def rollout_ended(kube: KubeCluster, namespace: str, name: str, change: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        status = kube.get_json("ms", name, "-n", namespace).get("status") or {}
        rollout = status.get("rollout") or {}
        done = rollout.get("id") == change and rollout.get("phase") != "Progressing"
        return status if done else None

    return wait_for(ended, timeout=300, what=f"the rollout {change} of {name} to end")


def pod_models(kube: KubeCluster, namespace: str, name: str) -> list[str]:
    pods = kube.get_json("pods", "-n", namespace, "-l", f"llm.modelserve.io/modelserve={name}")[
        "items"
    ]
    found = []
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        (fetch,) = pod["spec"]["initContainers"]
        found += [env["value"] for env in fetch["env"] if env["name"] == "MODEL_URI"]
    return found


def reasons(kube: KubeCluster, namespace: str, name: str) -> list[str]:
    found = kube.get_json("events", "-n", namespace)["items"]
    return [e.get("reason", "") for e in found if e["involvedObject"].get("name") == name]


def metric(url: str, metric_name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f"{metric_name}{{") and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def serve(kube: KubeCluster, namespace: str, name: str, uri: str, replicas: int) -> None:
    body = modelserve(name, uri, replicas)
    body["metadata"]["annotations"] = {MODEL_VERSION_ANNOTATION: "rollout-v1"}
    body["spec"]["model"]["servedName"] = name
    kube.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))
    wait_ready(kube, namespace, name, replicas)
    wait_for(
        lambda: (
            (kube.get_json("ms", name, "-n", namespace)["status"].get("model") or {}).get("version")
            == "rollout-v1"
        ),
        timeout=60,
        what="the first model to be recorded",
    )


def test_two_replicas_roll_to_a_new_version_and_back_from_a_crashing_one_without_a_failure(
    crds: KubeCluster,
    operator: RunningOperator,
    bed: dict[str, Any],
    versions: dict[str, str],
) -> None:
    namespace, gateway = bed["namespace"], bed["gateway"]
    name = "twin"
    serve(crds, namespace, name, versions["v1"], 2)

    with RequestStream(gateway, name, headers()) as stream:
        change = set_model(crds, namespace, name, versions["v2"], "rollout-v2")
        status = rollout_ended(crds, namespace, name, change)
        assert status["rollout"]["phase"] == "Complete", status
        assert status["model"] == {"uri": versions["v2"], "version": "rollout-v2"}
        served = len(stream.answers)
        wait_for(lambda: len(stream.answers) > served + 2, timeout=60, what="more answers")
    assert stream.failures() == [], stream.failures()
    assert pod_models(crds, namespace, name) == [versions["v2"]] * 2
    assert {"RollingOut", "RolledOut"} <= set(reasons(crds, namespace, name))

    rollbacks = metric(
        f"http://127.0.0.1:{operator.metrics_port}",
        "modelserve_operator_rollbacks_total",
        name=name,
    )
    with RequestStream(gateway, name, headers()) as stream:
        change = set_model(crds, namespace, name, versions["bad"], "rollout-bad")
        status = rollout_ended(crds, namespace, name, change)
        rollout = status["rollout"]
        assert (rollout["phase"], rollout["reason"]) == ("RolledBack", "ServerFailed"), rollout
        assert rollout["to"]["version"] == "rollout-bad"
        assert rollout["from"]["version"] == "rollout-v2"
        assert status["model"]["version"] == "rollout-v2"
        back = wait_ready(crds, namespace, name, 2)
        wait_for(
            lambda: pod_models(crds, namespace, name) == [versions["v2"]] * 2,
            timeout=120,
            what="every pod to run v2 again",
        )
    assert stream.failures() == [], stream.failures()
    # The spec still names the bad version: the servers stay on v2 until another change.
    assert back["spec"]["model"]["uri"] == versions["bad"]
    assert back["status"]["rollout"]["phase"] == "RolledBack"
    assert "RolledBack" in reasons(crds, namespace, name)
    after = metric(
        f"http://127.0.0.1:{operator.metrics_port}",
        "modelserve_operator_rollbacks_total",
        name=name,
    )
    assert after - rollbacks == 1


def test_one_replica_is_swapped_while_requests_are_held(
    crds: KubeCluster,
    operator: RunningOperator,
    bed: dict[str, Any],
    versions: dict[str, str],
) -> None:
    namespace, gateway = bed["namespace"], bed["gateway"]
    name = "solo"
    serve(crds, namespace, name, versions["v1"], 1)
    held = metric(gateway.url, "modelserve_gateway_holds_total", model=name, outcome="forwarded")

    with RequestStream(gateway, name, headers()) as stream:
        change = set_model(crds, namespace, name, versions["v2"], "rollout-v2")
        status = rollout_ended(crds, namespace, name, change)
        assert status["rollout"]["phase"] == "Complete", status
        served = len(stream.answers)
        wait_for(lambda: len(stream.answers) > served + 2, timeout=60, what="more answers")
    assert stream.failures() == [], stream.failures()
    assert pod_models(crds, namespace, name) == [versions["v2"]]
    forwarded = metric(
        gateway.url, "modelserve_gateway_holds_total", model=name, outcome="forwarded"
    )
    assert forwarded > held, "no request waited for the swap: the test proved nothing"


def test_a_version_the_store_does_not_have_is_put_back_and_the_server_keeps_serving(
    crds: KubeCluster,
    operator: RunningOperator,
    bed: dict[str, Any],
    versions: dict[str, str],
) -> None:
    namespace, gateway = bed["namespace"], bed["gateway"]
    name = "steady"
    serve(crds, namespace, name, versions["v1"], 1)
    missing = "s3://inference-models/models/rollout-missing/model.gguf"
    with RequestStream(gateway, name, headers()) as stream:
        change = set_model(crds, namespace, name, missing, "rollout-missing")
        status = rollout_ended(crds, namespace, name, change)
        assert (status["rollout"]["phase"], status["rollout"]["reason"]) == (
            "RolledBack",
            "NotRecorded",
        ), status
        served = len(stream.answers)
        wait_for(lambda: len(stream.answers) > served + 2, timeout=60, what="more answers")
    assert stream.failures() == [], stream.failures()
    assert status["phase"] == "Ready"
    assert pod_models(crds, namespace, name) == [versions["v1"]]
