"""A model spread over several nodes (spec.resources.nodes, spec.parallelism): the real API
server accepts the groups vLLM can run and refuses the rest with a readable message, and the
operator's spec model refuses the same specs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelserve.common.modelserve import GROUP, KIND, VERSION, ModelServeSpec
from modelserve.testbed.kube import KubeCluster

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "vllm-multinode.yaml"
MULTINODE: dict[str, Any] = {
    "runtime": "vllm",
    "model": {"uri": "s3://platform/llama-3.1-405b-instruct/", "format": "safetensors"},
    "resources": {"gpus": 8, "nodes": 2},
}


def spec(**changes: Any) -> dict[str, Any]:
    merged = {**MULTINODE, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def manifest(body: dict[str, Any], name: str = "big") -> str:
    head = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name}}
    return yaml.safe_dump({**head, "spec": body})


ACCEPTED = [
    pytest.param(spec(), id="nodes-only"),
    pytest.param(spec(parallelism={"tensor": 8, "pipeline": 2}), id="tensor-8-pipeline-2"),
    pytest.param(spec(parallelism={"tensor": 16, "pipeline": 1}), id="tensor-across-nodes"),
    pytest.param(spec(replicas=3, args=["--max-num-seqs", "64"]), id="three-groups"),
]
# (spec, what the API server says, what the operator's spec model says)
REFUSED = [
    pytest.param(
        spec(runtime="llamacpp", model={"uri": "s3://platform/m.gguf"}),
        "only runtime vllm takes it",
        "only runtime vllm takes it",
        id="llamacpp",
    ),
    pytest.param(
        spec(resources={"nodes": 2}),
        "spec.resources.nodes needs spec.resources.gpus",
        "spec.resources.nodes needs spec.resources.gpus",
        id="no-gpus",
    ),
    pytest.param(
        spec(resources={"gpus": 8}, parallelism={"tensor": 8, "pipeline": 1}),
        "spec.parallelism splits a model over several nodes: set spec.resources.nodes",
        "spec.parallelism splits a model over several nodes",
        id="parallelism-without-nodes",
    ),
    pytest.param(
        spec(parallelism={"tensor": 8, "pipeline": 1}),
        "tensor x pipeline must equal every GPU of the group",
        "tensor x pipeline (8) must equal every GPU of the group",
        id="product-too-small",
    ),
    pytest.param(
        spec(parallelism={"tensor": 4, "pipeline": 8}),
        "tensor x pipeline must equal every GPU of the group",
        "tensor x pipeline (32) must equal every GPU of the group",
        id="product-too-large",
    ),
    pytest.param(
        spec(args=["--tensor-parallel-size=4"]),
        "spec.args may not set --tensor-parallel-size",
        "spec.args sets --tensor-parallel-size",
        id="tensor-flag-in-args",
    ),
    pytest.param(
        spec(args=["-pp", "2"]),
        "spec.args may not set --tensor-parallel-size",
        "spec.args sets -pp",
        id="short-pipeline-flag-in-args",
    ),
    pytest.param(
        spec(args=["--distributed-executor-backend", "mp"]),
        "spec.args may not set --tensor-parallel-size",
        "spec.args sets --distributed-executor-backend",
        id="backend-in-args",
    ),
]
# --- The API server ----------------------------------------------------------------------


@pytest.mark.kube
@pytest.mark.parametrize("body", ACCEPTED)
def test_groups_vllm_can_run_are_accepted(
    crds: KubeCluster, namespace: str, body: dict[str, Any]
) -> None:
    crds.kubectl("apply", "-n", namespace, stdin=manifest(body))
    stored = crds.get_json("ms", "big", "-n", namespace)["spec"]
    assert stored["resources"]["nodes"] == 2
    # The stored spec reads back into the operator's model.
    assert ModelServeSpec.model_validate(stored).group_size == 2


@pytest.mark.kube
@pytest.mark.parametrize(("body", "expected", "model_says"), REFUSED)
def test_bad_groups_are_refused_with_a_readable_message(
    crds: KubeCluster, namespace: str, body: dict[str, Any], expected: str, model_says: str
) -> None:
    with pytest.raises(RuntimeError) as refused:
        crds.kubectl("apply", "-n", namespace, stdin=manifest(body))
    assert expected in " ".join(str(refused.value).split())
    assert crds.get_json("ms", "-n", namespace)["items"] == []


@pytest.mark.kube
@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (
            {"gpus": 8, "nodes": 1},
            "spec.resources.nodes in body should be greater than or equal to 2",
        ),
        (
            {"gpus": 8, "nodes": 17},
            "spec.resources.nodes in body should be less than or equal to 16",
        ),
    ],
)
def test_group_size_is_bounded(
    crds: KubeCluster, namespace: str, resources: dict[str, Any], expected: str
) -> None:
    with pytest.raises(RuntimeError) as refused:
        crds.kubectl("apply", "-n", namespace, stdin=manifest(spec(resources=resources)))
    assert expected in " ".join(str(refused.value).split())


@pytest.mark.kube
def test_a_long_name_is_refused_only_with_nodes(crds: KubeCluster, namespace: str) -> None:
    name = "a" * 50
    with pytest.raises(RuntimeError) as refused:
        crds.kubectl("apply", "-n", namespace, stdin=manifest(spec(), name=name))
    assert "use at most 49 characters" in " ".join(str(refused.value).split())
    single = spec(resources={"gpus": 8})
    crds.kubectl("apply", "-n", namespace, stdin=manifest(single, name=name))


@pytest.mark.kube
def test_the_documented_example_is_accepted(crds: KubeCluster, namespace: str) -> None:
    created = crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLE))
    assert "created (server dry run)" in created


# --- The spec model ----------------------------------------------------------------------


@pytest.mark.parametrize("body", ACCEPTED)
def test_the_spec_model_accepts_what_the_crd_accepts(body: dict[str, Any]) -> None:
    assert ModelServeSpec.model_validate(body).resources.nodes == 2


@pytest.mark.parametrize(("body", "expected", "model_says"), REFUSED)
def test_the_spec_model_refuses_what_the_crd_refuses(
    body: dict[str, Any], expected: str, model_says: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(model_says)):
        ModelServeSpec.model_validate(body)


@pytest.mark.parametrize("nodes", [0, 1, 17])
def test_the_spec_model_bounds_the_group(nodes: int) -> None:
    with pytest.raises(ValidationError, match="nodes"):
        ModelServeSpec.model_validate(spec(resources={"gpus": 8, "nodes": nodes}))


def test_parallelism_defaults_to_tensor_per_node_and_pipeline_across() -> None:
    model = ModelServeSpec.model_validate(spec())
    assert (model.group_size, model.tensor_parallel_size, model.pipeline_parallel_size) == (2, 8, 2)
    chosen = ModelServeSpec.model_validate(spec(parallelism={"tensor": 16, "pipeline": 1}))
    assert (chosen.tensor_parallel_size, chosen.pipeline_parallel_size) == (16, 1)


def test_without_nodes_a_spec_is_as_before() -> None:
    model = ModelServeSpec.model_validate(
        spec(resources={"gpus": 2}, args=["--tensor-parallel-size", "2"])
    )
    assert model.resources.nodes is None
    assert model.parallelism is None
    assert model.group_size == 1
