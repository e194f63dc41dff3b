"""The registry's workflow on the real components, through the gateway: register
checkpoints, serve the model's active version, set another active on a 2-replica server
under a steady stream of requests, and watch a corrupt one roll back by itself into the
history.

Real: the download service (registration copies and hashes the checkpoint in the
platform MinIO, on PostgreSQL), the gateway (the registry's routes, set_active patching
the server, the rollback recorder), the operator and llama.cpp pods that run.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from modelserve.common.tokens import ADMIN, TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator, RunningService, gateway_kubeconfig
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import fresh_schema, schema_url
from modelserve.testbed.testing_loop import RequestStream, wait_ready
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

SECRET = "registry-workflow-secret-of-at-least-32-bytes"
NAME = "trainee"


def admin() -> dict[str, str]:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return {"Authorization": f"Bearer {signer.sign('trainer', roles=(ADMIN,))}"}


@pytest.fixture(scope="module")
def bed(
    crds: KubeCluster,
    operator: RunningOperator,
    database_url: str,
    testbed_dir: Path,
    upstream_store: MinioServer,
    platform_store: MinioServer,
) -> Iterator[dict[str, Any]]:
    namespace = f"reg-{uuid.uuid4().hex[:8]}"
    bucket = f"registry-{uuid.uuid4().hex[:8]}"
    platform_store.client().make_bucket(bucket)
    crds.kubectl("create", "namespace", namespace)
    logs = testbed_dir / "logs"
    download_settings = {
        "JWT_SECRET": SECRET,
        "DOWNLOAD_UPSTREAM_ENDPOINT": upstream_store.endpoint,
        "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream_store.access_key,
        "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream_store.secret_key,
        "DOWNLOAD_PLATFORM_ENDPOINT": platform_store.endpoint,
        "DOWNLOAD_PLATFORM_ACCESS_KEY": platform_store.access_key,
        "DOWNLOAD_PLATFORM_SECRET_KEY": platform_store.secret_key,
        "DOWNLOAD_PLATFORM_BUCKET": bucket,
        "DOWNLOAD_POLL_SECONDS": "1",
        "DOWNLOAD_PROGRESS_SECONDS": "0.2",
    }
    try:
        with (
            service_on_fresh_schema(
                "download", database_url, logs, download_settings, prefix="regdl"
            ) as download,
            fresh_schema(database_url, "reggw") as schema,
        ):
            gateway_settings = {
                "JWT_SECRET": SECRET,
                "GATEWAY_DATABASE_URL": schema_url(database_url, schema),
                "GATEWAY_ADMIN_PASSWORD": "registry-workflow-admin-password",
                "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(crds)),
                "GATEWAY_WATCH_NAMESPACES": namespace,
                "GATEWAY_NAMESPACE": namespace,
                "GATEWAY_DOWNLOAD_URL": download.url,
                "GATEWAY_HOLD_TIMEOUT_SECONDS": "120",
            }
            with service_on_fresh_schema(
                "gateway", database_url, logs, gateway_settings, prefix="reggwx"
            ) as gateway:
                yield {
                    "namespace": namespace,
                    "bucket": bucket,
                    "download": download,
                    "gateway": gateway,
                }
    finally:
        crds.kubectl("delete", "namespace", namespace, "--wait=false")


def put_checkpoint(store: MinioServer, bucket: str, key: str, data: bytes) -> str:
    """A checkpoint as a trainer leaves it in the platform store (no tags: not a model yet)."""
    store.client().put_object(bucket, key, io.BytesIO(data), len(data))
    return f"s3://{bucket}/{key}"


def register(bed: dict[str, Any], version: str, uri: str, tags: str) -> dict[str, Any]:
    gateway: RunningService = bed["gateway"]
    answer = httpx.post(
        f"{gateway.url}/models/register",
        json={"id": version, "name": NAME, "source": "4090", "tags": tags, "uri": uri},
        headers=admin(),
        timeout=30,
    )
    assert answer.status_code == 202, answer.text

    def registered() -> dict[str, Any] | None:
        job = httpx.get(f"{bed['download'].url}/status/{version}", headers=admin(), timeout=10)
        found: dict[str, Any] = job.json()
        assert found["state"] not in ("failed", "cancelled"), found
        return found if found["state"] == "ready" else None

    return wait_for(registered, timeout=120, what=f"{version} to be registered")


def set_active(gateway: RunningService, version: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{gateway.url}/models/set_active", json={"id": version}, headers=admin(), timeout=30
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def active(gateway: RunningService) -> dict[str, Any]:
    answer = httpx.get(
        f"{gateway.url}/models/active", params={"name": NAME}, headers=admin(), timeout=30
    )
    assert answer.status_code == 200, answer.text
    (found,) = answer.json()
    return dict(found)


def rollout_ends(gateway: RunningService, version: str) -> dict[str, Any]:
    """/models/active once the server's rollout to `version` ended."""

    def ended() -> dict[str, Any] | None:
        found = active(gateway)
        (server,) = found["servers"]
        rollout = server["rollout"] or {}
        done = rollout.get("to_version") == version and rollout.get("phase") != "Progressing"
        return found if done else None

    return wait_for(ended, timeout=300, what=f"the rollout to {version} to end")


def test_register_set_active_and_an_automatic_rollback_in_the_history(
    crds: KubeCluster,
    operator: RunningOperator,
    bed: dict[str, Any],
    platform_store: MinioServer,
) -> None:
    gateway, namespace, bucket = bed["gateway"], bed["namespace"], bed["bucket"]
    weights = ensure_runtime().model.read_bytes()
    good = put_checkpoint(platform_store, bucket, "checkpoints/step-1000.gguf", weights)
    half = weights[: len(weights) // 2]
    broken = put_checkpoint(platform_store, bucket, "checkpoints/step-3000.gguf", half)

    first = register(bed, "trainee-step-1000", good, "step1000,math")
    register(bed, "trainee-step-2000", good, "step2000,math")
    register(bed, "trainee-step-3000", broken, "step3000")
    assert first["state"] == "ready"

    listed = httpx.get(
        f"{gateway.url}/models", params={"name": NAME}, headers=admin(), timeout=30
    ).json()
    by_id = {record["id"]: record for record in listed}
    assert set(by_id) == {"trainee-step-1000", "trainee-step-2000", "trainee-step-3000"}
    assert by_id["trainee-step-1000"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert by_id["trainee-step-3000"]["sha256"] == hashlib.sha256(half).hexdigest()
    assert by_id["trainee-step-1000"]["source_label"] == "4090"
    assert by_id["trainee-step-1000"]["origin"] == "register"
    assert by_id["trainee-step-1000"]["tags"] == ["step1000", "math"]
    math = httpx.get(
        f"{gateway.url}/models", params={"name": NAME, "tag": "math"}, headers=admin(), timeout=30
    ).json()
    assert {record["id"] for record in math} == {"trainee-step-1000", "trainee-step-2000"}

    # The first version active, then served by name: the server runs the active version.
    assert set_active(gateway, "trainee-step-1000")["servers"] == []
    served = httpx.post(
        f"{gateway.url}/serve",
        json={"model_name": NAME, "replicas": 2, "namespace": namespace,
              "runtime_params": "--ctx-size 2048 --parallel 2 --threads 1"},
        headers=admin(),
        timeout=30,
    )  # fmt: skip
    assert served.status_code == 201, served.text
    server = served.json()
    assert server["model_id"] == "trainee-step-1000"
    wait_ready(crds, namespace, server["name"], 2)

    with RequestStream(gateway, NAME, admin()) as stream:
        moved = set_active(gateway, "trainee-step-2000")
        assert moved["previous"]["id"] == "trainee-step-1000" and moved["changed"]
        assert [s["server_id"] for s in moved["servers"]] == [server["server_id"]]
        done = rollout_ends(gateway, "trainee-step-2000")
        assert done["servers"][0]["rollout"]["phase"] == "Complete"
        assert done["servers"][0]["version"] == "trainee-step-2000"

        set_active(gateway, "trainee-step-3000")
        back = rollout_ends(gateway, "trainee-step-3000")
        rollout = back["servers"][0]["rollout"]
        assert (rollout["phase"], rollout["reason"]) == ("RolledBack", "ServerFailed"), rollout
        assert back["servers"][0]["version"] == "trainee-step-2000"
        # The gateway reports the rollback: the active version is the previous one again.
        restored = wait_for(
            lambda: (found := active(gateway))["id"] == "trainee-step-2000" and found,
            timeout=60,
            what="the registry to record the rollback",
        )
        assert restored["last_rollback"]["reason"] == "ServerFailed"
        assert restored["last_rollback"]["failed_id"] == "trainee-step-3000"
        wait_ready(crds, namespace, server["name"], 2)
    assert stream.failures() == [], stream.failures()

    history = httpx.get(
        f"{gateway.url}/models/history", params={"name": NAME}, headers=admin(), timeout=30
    ).json()
    steps = [(h["action"], h["from_id"], h["to_id"], h["actor"]) for h in history]
    assert steps == [
        ("automatic_rollback", "trainee-step-3000", "trainee-step-2000", "platform"),
        ("set_active", "trainee-step-2000", "trainee-step-3000", "trainer"),
        ("set_active", "trainee-step-1000", "trainee-step-2000", "trainer"),
        ("set_active", None, "trainee-step-1000", "trainer"),
    ]
    assert history[0]["server"] == f"{namespace}/{server['name']}"

    # The version rolled back from, set active again: its server, whose spec still names
    # it, is rolled out to it anew under the new history entry, and rolled back again.
    again = set_active(gateway, "trainee-step-3000")
    assert again["changed"] and [s["server_id"] for s in again["servers"]] == [server["server_id"]]

    def retried() -> dict[str, Any] | None:
        rollout = active(gateway)["servers"][0]["rollout"] or {}
        anew = rollout.get("id") == str(again["history_id"])
        return rollout if anew and rollout.get("phase") != "Progressing" else None

    rollout = wait_for(retried, timeout=300, what="the second rollout to step-3000 to end")
    assert (rollout["phase"], rollout["reason"]) == ("RolledBack", "ServerFailed"), rollout
    wait_for(
        lambda: active(gateway)["id"] == "trainee-step-2000",
        timeout=60,
        what="the registry to record the second rollback",
    )
    wait_ready(crds, namespace, server["name"], 2)

    # An earlier version set active is the rollback people do.
    set_active(gateway, "trainee-step-1000")
    assert rollout_ends(gateway, "trainee-step-1000")["servers"][0]["version"] == (
        "trainee-step-1000"
    )


def user(subject: str) -> dict[str, str]:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return {"Authorization": f"Bearer {signer.sign(subject)}"}


def test_bad_requests_and_other_tenants_get_clear_errors(
    bed: dict[str, Any], platform_store: MinioServer
) -> None:
    gateway, bucket = bed["gateway"], bed["bucket"]
    uri = put_checkpoint(platform_store, bucket, "checkpoints/owned.gguf", b"GGUF" + bytes(64))
    register(bed, "owned-by-admins", uri, "x")

    def post(path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{gateway.url}{path}", json=body, headers=headers, timeout=30)

    unknown = post("/models/set_active", {"id": "no-such-version"}, admin())
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
    assert post("/models/set_active", {}, admin()).status_code == 422
    assert post("/models/set_active", {"id": "owned-by-admins"}, {}).status_code == 401
    # Another tenant cannot see the version, so cannot make it active, nor see the name's.
    hidden = post("/models/set_active", {"id": "owned-by-admins"}, user("mallory"))
    assert hidden.status_code == 404, hidden.text
    seen = httpx.get(f"{gateway.url}/models/active", headers=user("mallory"), timeout=30)
    assert (seen.status_code, seen.json()) == (200, [])
    # ... nor list it, nor serve it by id or by name: a registered version is its owner's.
    listed = httpx.get(f"{gateway.url}/models", headers=user("mallory"), timeout=30)
    assert "owned-by-admins" not in [record["id"] for record in listed.json()]
    for body in ({"model_uuid": "owned-by-admins"}, {"model_name": "owned-by-admins"}):
        served = post("/serve", {**body, "namespace": bed["namespace"]}, user("mallory"))
        assert (served.status_code, served.json()["error"]["code"]) == (404, "model_not_found")
    both = post(
        "/models/register",
        {"id": "mallory-1", "uri": uri, "upload_id": "u" * 32, "name": "x"},
        user("mallory"),
    )
    assert (both.status_code, both.json()["error"]["code"]) == (422, "invalid_checkpoint")
    taken = post("/models/register", {"id": "owned-by-admins", "uri": uri}, admin())
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "model_exists")
