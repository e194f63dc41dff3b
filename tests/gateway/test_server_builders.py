"""The pure parts of serving: a POST /serve body and a model record into a ModelServe, a
ModelServe back into what /status shows, and an API server's refusals into gateway errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelserve.common.errors import ApiError
from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL, ModelServeSpec
from modelserve.gateway.kubeservers import api_error, served_namespaces
from modelserve.gateway.models import ModelRecord, allowed
from modelserve.gateway.servers import (
    MAX_NAME,
    ServeRequest,
    build_modelserve,
    server_name,
    server_status,
    slug,
)

GGUF = ModelRecord.model_validate(
    {
        "id": "ac04b7c6-f776-5cf1-a9d8-ac936e7357c1",
        "name": "SmolLM2-135M-Instruct",
        "format": "gguf",
        "uri": "s3://inference-models/models/ac04b7c6/SmolLM2-135M-Instruct.Q4_1.gguf",
        "size": 98362432,  # the download service's other fields pass through
    }
)
FOLDER = ModelRecord(
    id="llama-3-8b", name="Llama 3 8B", format="safetensors", uri="s3://b/models/llama-3-8b/"
)


def build(record: ModelRecord = GGUF, **body: Any) -> dict[str, Any]:
    request = ServeRequest.model_validate({"model_uuid": record.id, **body})
    return build_modelserve(
        request, record, owner="alice", team=None, namespace="inference", suffix="x1y2z3"
    )


def error_of(call: Any) -> ApiError:
    with pytest.raises(ApiError) as raised:
        call()
    return raised.value


def test_a_gguf_model_is_served_by_llamacpp_on_cpu_with_its_record_and_owner() -> None:
    manifest = build(runtime_params="--ctx-size 2048 --chat-template 'a b'", replicas=2)
    assert manifest["apiVersion"] == "llm.modelserve.io/v1alpha1"
    assert manifest["kind"] == "ModelServe"
    assert manifest["metadata"] == {
        "name": "smollm2-135m-instruct-x1y2z3",
        "namespace": "inference",
        "labels": {OWNER_LABEL: "alice"},
        # The version it runs: set-active rolls the server to another one.
        "annotations": {"llm.modelserve.io/model-version": GGUF.id},
    }
    assert manifest["spec"] == {
        "runtime": "llamacpp",
        "model": {
            "uri": GGUF.uri,
            "modelId": GGUF.id,
            "format": "gguf",
            "servedName": "SmolLM2-135M-Instruct",
        },
        "replicas": 2,
        "resources": {"gpus": 0},
        "args": ["--ctx-size", "2048", "--chat-template", "a b"],
    }
    # What the operator and the admission webhook read of it.
    spec = ModelServeSpec.model_validate(manifest["spec"])
    assert spec.model.served_name == "SmolLM2-135M-Instruct"


def test_a_safetensors_folder_goes_to_vllm_with_one_gpu_unless_told_otherwise() -> None:
    manifest = build(FOLDER, served_name="llama3", team=None)
    assert manifest["spec"]["runtime"] == "vllm"
    assert manifest["spec"]["resources"] == {"gpus": 1}
    assert manifest["spec"]["model"]["servedName"] == "llama3"
    manifest = build(FOLDER, gpus=2, gpu_type="NVIDIA-L4", runtime_params=["--max-num-seqs", "64"])
    assert manifest["spec"]["resources"] == {"gpus": 2, "gpuType": "NVIDIA-L4"}
    assert manifest["spec"]["args"] == ["--max-num-seqs", "64"]
    assert build(runtime="vllm")["spec"]["resources"] == {"gpus": 1}


def test_the_team_label_names_the_team_served_for() -> None:
    request = ServeRequest(model_name="SmolLM2-135M-Instruct")
    manifest = build_modelserve(
        request, GGUF, owner="bob", team="nlp", namespace="default", suffix="abcdef"
    )
    assert manifest["metadata"]["labels"] == {OWNER_LABEL: "bob", TEAM_LABEL: "nlp"}


@pytest.mark.parametrize(
    ("record", "body", "code"),
    [
        (FOLDER, {"runtime": "llamacpp"}, "unsupported_format"),
        (GGUF.model_copy(update={"format": "pytorch"}), {}, "unsupported_format"),
        (FOLDER, {"gpus": 0}, "gpus_required"),
        (GGUF, {"gpu_type": "NVIDIA-L4"}, "invalid_gpu_type"),
        (GGUF, {"runtime_params": "--chat-template 'unclosed"}, "invalid_runtime_params"),
    ],
)
def test_requests_that_cannot_work_are_refused_with_a_reason(
    record: ModelRecord, body: dict[str, Any], code: str
) -> None:
    error = error_of(lambda: build(record, **body))
    assert (error.status_code, error.code) == (422, code)


def test_owners_namespaces_and_bodies_that_kubernetes_cannot_hold_are_refused() -> None:
    request = ServeRequest(model_uuid=GGUF.id)
    for owner, team, namespace, code in [
        ("alice@example.com", None, "default", "invalid_label_value"),
        ("alice", "x" * 64, "default", "invalid_label_value"),
        ("alice", None, "Not_A_Namespace", "invalid_namespace"),
    ]:
        error = error_of(
            lambda o=owner, t=team, n=namespace: build_modelserve(
                request, GGUF, owner=o, team=t, namespace=n, suffix="abcdef"
            )
        )
        assert error.code == code
    with pytest.raises(ValidationError, match="model_uuid or model_name"):
        ServeRequest.model_validate({"replicas": 1})
    with pytest.raises(ValidationError):
        ServeRequest.model_validate({"model_uuid": "m", "runtime": "external"})
    with pytest.raises(ValidationError):
        ServeRequest.model_validate({"model_uuid": "m", "replicas": -1})


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("SmolLM2-135M-Instruct", "smollm2-135m-instruct-abcdef"),
        ("Qwen.gguf", "qwen-gguf-abcdef"),
        ("7B model (v2)", "m-7b-model-v2-abcdef"),
        ("___", "m-abcdef"),
        ("a" * 80, f"{'a' * (MAX_NAME - 7)}-abcdef"),
        ("a" * 42 + "-b", f"{'a' * 42}-abcdef"),
    ],
)
def test_names_fit_the_crds_rule(model: str, name: str) -> None:
    made = server_name(model, "abcdef")
    assert made == name
    assert len(made) <= MAX_NAME
    assert slug(model)[0].isalpha()


def modelserve_object(status: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    body = build(GGUF)
    body["metadata"].update(
        uid="0b0e4c2e-1111-2222-3333-444455556666",
        creationTimestamp="2025-01-01T00:00:00Z",
        **metadata,
    )
    if status is not None:
        body["status"] = status
    return body


def test_status_before_the_operator_and_after() -> None:
    fresh = server_status(modelserve_object(), ingress_url="http://localhost:8080/")
    assert fresh.server_id == "0b0e4c2e-1111-2222-3333-444455556666"
    assert (fresh.status, fresh.ready_replicas, fresh.replicas) == ("Pending", 0, 1)
    assert fresh.endpoint == "http://localhost:8080/0b0e4c2e-1111-2222-3333-444455556666/v1"
    assert fresh.route == "/0b0e4c2e-1111-2222-3333-444455556666/"
    assert (fresh.owner, fresh.team, fresh.model, fresh.model_id) == (
        "alice",
        None,
        "SmolLM2-135M-Instruct",
        GGUF.id,
    )
    assert fresh.runtime == "llamacpp"
    assert fresh.created == "2025-01-01T00:00:00Z"

    status = {
        "phase": "Degraded",
        "message": "1/2 replicas ready: Insufficient nvidia.com/gpu",
        "readyReplicas": 1,
        "serverId": "0b0e4c2e-1111-2222-3333-444455556666",
        "route": "/0b0e4c2e-1111-2222-3333-444455556666/",
    }
    seen = server_status(modelserve_object(status), ingress_url=None)
    assert (seen.status, seen.ready_replicas) == ("Degraded", 1)
    assert seen.message.endswith("Insufficient nvidia.com/gpu")
    assert seen.endpoint == "/0b0e4c2e-1111-2222-3333-444455556666/v1"

    going = server_status(
        modelserve_object(status, deletionTimestamp="2025-01-02T00:00:00Z"), ingress_url=None
    )
    assert going.status == "Stopping"


def api_exception(status: int, message: str, kind: str = "modelserves") -> ApiException:
    error = ApiException(status=status, reason="reason")
    error.body = json.dumps(
        {"kind": "Status", "message": message, "details": {"kind": kind}, "code": status}
    )
    return error


def test_the_contract_webhooks_refusal_keeps_its_reason_and_message() -> None:
    denied = api_exception(
        403,
        'admission webhook "modelserves.contract.modelserve.io" denied the request: '
        "[max_replicas_exceeded] 2 replicas is over the limit of 1 per server for user alice",
    )
    error = api_error(denied, action="create the server")
    assert (error.status_code, error.code) == (403, "max_replicas_exceeded")
    assert error.detail == "2 replicas is over the limit of 1 per server for user alice"

    rbac = api_exception(403, 'modelserves is forbidden: User "x" cannot create resource')
    assert api_error(rbac, action="create the server").code == "cluster_forbidden"
    missing = api_exception(404, 'namespaces "nope" not found', kind="namespaces")
    assert api_error(missing, action="create the server").code == "namespace_not_found"
    invalid = api_exception(422, "spec.replicas: Invalid value")
    assert (api_error(invalid, action="x").status_code, api_error(invalid, action="x").code) == (
        422,
        "invalid_server",
    )
    assert api_error(api_exception(409, "exists"), action="x").code == "conflict"
    broken = ApiException(status=500, reason="Internal Server Error")
    assert api_error(broken, action="x").status_code == 503


def test_allowlists_match_a_models_name_as_the_contract_service_matches_served_names() -> None:
    assert allowed(GGUF, [])
    assert allowed(GGUF, [["SmolLM2-*"]])
    assert allowed(GGUF, [["qwen*", "SmolLM2-135M-Instruct"], ["*"]])
    assert not allowed(GGUF, [["SmolLM2-*"], ["qwen*"]])
    assert not allowed(GGUF, [["smollm2*"]])  # fnmatchcase
    assert not allowed(GGUF, [["ac04b7c6-*"]])  # the id is no served name


def test_the_gateway_serves_every_namespace_or_those_listed() -> None:
    assert served_namespaces("*", "default") is None
    assert served_namespaces("inference, team-a", "default") == [
        "default",
        "inference",
        "team-a",
    ]
