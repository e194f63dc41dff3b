"""What the operator builds for a ModelServe, whole: each case's children (and store
Secret) compared with its golden YAML in tests/operator/golden/. The builder tests check the
fields that carry a behaviour one at a time; mutants of builders.py and runtimes.py showed
that a changed key, kind, port name or probe timing went unnoticed (bench/mutation.py).

A deliberate change to what is built: review the new objects, then write them with
`MODELSERVE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/operator/test_mutants_builders.py` and
commit the YAML with the change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.common.modelserve import ModelServe
from modelserve.operator.builders import build_store_secret
from modelserve.operator.children import build_children
from modelserve.operator.settings import OperatorSettings

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = OperatorSettings(
    model_store_endpoint="minio.platform:9000",
    model_store_access_key="ak",  # type: ignore[arg-type]  # pydantic turns str into SecretStr
    model_store_secret_key="sk",  # type: ignore[arg-type]
    # Images of the test's own: a release that bumps the defaults changes no golden file.
    vllm_image="vllm:golden",
    llamacpp_image="llama-cpp:golden",
    llamacpp_cuda_image="llama-cpp-cuda:golden",
    fetch_image="modelserve:golden",
)
CASES: dict[str, dict[str, Any]] = {
    # vLLM on two GPUs of a type, a model cache on a storage class, CPU and memory asked.
    "vllm-cached": {
        "runtime": "vllm",
        "model": {
            "uri": "s3://models/qwen/",
            "servedName": "qwen-7b",
            "cache": {"enabled": True, "size": "80Gi", "storageClassName": "nfs"},
        },
        "resources": {"gpus": 2, "gpuType": "NVIDIA-L4", "cpu": "4", "memory": "16Gi"},
        "vllm": {"maxModelLen": 8192},
        "replicas": 2,
        "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}],
    },
    # llama.cpp on CPU, one GGUF file.
    "llamacpp-cpu": {
        "runtime": "llamacpp",
        "model": {"uri": "s3://models/smollm2/model.gguf", "format": "gguf"},
        "resources": {"gpus": 0},
    },
    # llama.cpp offloading every layer to a GPU.
    "llamacpp-gpu": {
        "runtime": "llamacpp",
        "model": {"uri": "s3://models/smollm2/model.gguf", "format": "gguf"},
        "resources": {"gpus": 1},
    },
}


class NoAliases(yaml.SafeDumper):
    """Writes an object that occurs twice in full, both times (no &id001 anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def modelserve(spec: dict[str, Any]) -> ModelServe:
    meta = {"name": "m", "namespace": "team-a", "uid": "uid-1", "generation": 3}
    return ModelServe.from_body({"metadata": meta, "spec": spec})


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_is_built_is_the_golden_objects(case: str) -> None:
    ms = modelserve(CASES[case])
    built = [build_store_secret(ms, "model.gguf\n"), *build_children(ms, SETTINGS)]
    golden = GOLDEN / f"builders-{case}.yaml"
    if os.environ.get("MODELSERVE_UPDATE_GOLDEN") == "1":
        golden.write_text(yaml.dump_all(built, Dumper=NoAliases, sort_keys=True))
    assert built == list(yaml.safe_load_all(golden.read_text()))


def test_the_replicas_asked_for_override_the_specs() -> None:
    # The autoscaler's count, not spec.replicas, while it manages the model.
    ms = modelserve(CASES["vllm-cached"])
    deployments = [c for c in build_children(ms, SETTINGS, 0) if c["kind"] == "Deployment"]
    assert [d["spec"]["replicas"] for d in deployments] == [0]
