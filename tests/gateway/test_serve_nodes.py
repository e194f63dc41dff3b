"""POST /serve for a model over several nodes, the pure part: `nodes` and `parallelism`
of the body into the ModelServe's spec.resources.nodes and spec.parallelism, the refusals
in the request's words or the spec model's, and /status's `nodes`."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelserve.common.errors import ApiError
from modelserve.common.modelserve import ModelServeSpec
from modelserve.gateway.models import ModelRecord
from modelserve.gateway.servers import (
    MAX_GROUP_NAME,
    MAX_NAME,
    ServeRequest,
    build_modelserve,
    server_status,
)

LLAMA = ModelRecord(
    id="meta-llama-3.1-405b",
    name="Meta-Llama-3.1-405B",
    format="safetensors",
    uri="s3://inference-models/models/meta-llama-3.1-405b/",
)
GGUF = ModelRecord(
    id="tiny-chat", name="Tiny-Chat", format="gguf", uri="s3://b/models/tiny-chat/t.gguf"
)


def build(record: ModelRecord = LLAMA, **body: Any) -> dict[str, Any]:
    request = ServeRequest.model_validate({"model_uuid": record.id, **body})
    return build_modelserve(
        request, record, owner="alice", team="nlp", namespace="inference", suffix="x1y2z3"
    )


def refusal(record: ModelRecord = LLAMA, **body: Any) -> tuple[str, str]:
    """The 422's code and message."""
    with pytest.raises(ApiError) as raised:
        build(record, **body)
    assert raised.value.status_code == 422
    return raised.value.code, str(raised.value.detail)


def test_nodes_and_parallelism_become_the_spec_s() -> None:
    spec = build(nodes=2, gpus=8, parallelism={"tensor": 8, "pipeline": 2})["spec"]
    assert spec["runtime"] == "vllm"
    assert spec["resources"] == {"gpus": 8, "nodes": 2}
    assert spec["parallelism"] == {"tensor": 8, "pipeline": 2}
    # What the operator reads of it: a group of two pods of eight GPUs, 8 x 2.
    read = ModelServeSpec.model_validate(spec)
    assert (read.group_size, read.tensor_parallel_size, read.pipeline_parallel_size) == (2, 8, 2)


def test_without_parallelism_vllm_gets_the_default_split() -> None:
    spec = build(nodes=4, gpus=2, replicas=3)["spec"]
    assert spec["resources"] == {"gpus": 2, "nodes": 4}
    assert "parallelism" not in spec
    assert spec["replicas"] == 3
    read = ModelServeSpec.model_validate(spec)
    assert (read.tensor_parallel_size, read.pipeline_parallel_size) == (2, 4)
    # gpus left out: one per node, as vllm's one per replica.
    assert build(nodes=2)["spec"]["resources"] == {"gpus": 1, "nodes": 2}


def test_one_node_stays_as_it_was() -> None:
    spec = build(gpus=8)["spec"]
    assert spec["resources"] == {"gpus": 8}
    assert "parallelism" not in spec


@pytest.mark.parametrize("nodes", [0, 1, 17, "two"])
def test_nodes_out_of_bounds_are_refused_by_the_body(nodes: object) -> None:
    with pytest.raises(ValidationError):
        ServeRequest.model_validate({"model_uuid": "m", "nodes": nodes})


@pytest.mark.parametrize(
    "parallelism",
    [{"tensor": 8}, {"tensor": 8, "pipeline": 2, "data": 1}, {"tensor": 0, "pipeline": 2}],
)
def test_parallelism_takes_tensor_and_pipeline_only(parallelism: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        ServeRequest.model_validate({"model_uuid": "m", "nodes": 2, "parallelism": parallelism})


def test_llamacpp_cannot_spread_over_nodes() -> None:
    assert refusal(GGUF, nodes=2, gpus=1) == (
        "nodes_need_vllm",
        "nodes spreads a model over several nodes with vLLM over Ray: only runtime vllm "
        "takes it, and this server's runtime is llamacpp, the default for a gguf model",
    )
    code, message = refusal(GGUF, runtime="llamacpp", nodes=2, gpus=1)
    assert code == "nodes_need_vllm"
    assert message.endswith("this server's runtime is llamacpp")
    # vllm asked for by name on the same record takes nodes.
    assert build(GGUF, runtime="vllm", nodes=2, gpus=1)["spec"]["resources"]["nodes"] == 2


def test_nodes_need_gpus_on_every_node() -> None:
    assert refusal(nodes=2, gpus=0) == (
        "gpus_required",
        "nodes needs gpus, the GPUs of each node: 1 or more",
    )


def test_the_spec_model_s_rules_answer_422_in_its_words() -> None:
    code, message = refusal(nodes=2, gpus=8, parallelism={"tensor": 8, "pipeline": 3})
    assert code == "invalid_server_spec"
    assert message.startswith(
        "the ModelServe of this request would be refused: spec.parallelism: tensor x "
        "pipeline (24) must equal every GPU of the group, spec.resources.nodes x "
        "spec.resources.gpus (16). The request's nodes, gpus, parallelism and runtime_params "
    )
    code, message = refusal(gpus=8, parallelism={"tensor": 4, "pipeline": 2})
    assert code == "invalid_server_spec"
    assert "spec.parallelism splits a model over several nodes" in message
    code, message = refusal(nodes=2, gpus=8, runtime_params="--tensor-parallel-size 16")
    assert code == "invalid_server_spec"
    assert "spec.args sets --tensor-parallel-size" in message


def test_a_group_s_name_fits_the_crd_s_49_characters() -> None:
    long = LLAMA.model_copy(update={"name": "a" * 80})
    single = build(long)["metadata"]["name"]
    grouped = build(long, nodes=2)["metadata"]["name"]
    assert (len(single), len(grouped)) == (MAX_NAME, MAX_GROUP_NAME)
    assert grouped == f"{'a' * (MAX_GROUP_NAME - 7)}-x1y2z3"


def test_status_shows_the_nodes_of_a_replica() -> None:
    grouped = build(nodes=2, gpus=8)
    body = {**grouped, "metadata": {**grouped["metadata"], "uid": "u-1"}}
    assert server_status(body, ingress_url=None).nodes == 2
    single = build(gpus=1)
    body = {**single, "metadata": {**single["metadata"], "uid": "u-2"}}
    assert server_status(body, ingress_url=None).nodes is None
