"""The ModelServe CRD: the contract with the operator's model, and the real API server enforcing it.

The first tests read the YAML only; the rest apply manifests to the test bed's
kube-apiserver, so defaults, CEL rules, `kubectl explain`, the scale and status
subresources and the printer columns are checked as users meet them.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from modelserve.common.modelserve import GROUP, KIND, PLURAL, VERSION, ModelServeSpec
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.polling import wait_for

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / f"{PLURAL}.{GROUP}.yaml"
NAME = "smollm2"

VLLM: dict[str, Any] = {
    "runtime": "vllm",
    "model": {"uri": "s3://platform/smollm2-135m/", "format": "safetensors"},
    "resources": {"gpus": 1},
}
LLAMACPP: dict[str, Any] = {
    "runtime": "llamacpp",
    "model": {"uri": "s3://platform/smollm2-135m.Q4_1.gguf", "format": "gguf"},
}
EXTERNAL: dict[str, Any] = {
    "runtime": "external",
    "external": {"url": "http://llm.default.svc:8080/v1"},
}


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def manifest(spec: dict[str, Any], **extra: Any) -> str:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": NAME}}
    return yaml.safe_dump({**body, "spec": spec, **extra})


def apply(cluster: KubeCluster, namespace: str, spec: dict[str, Any]) -> str:
    return cluster.kubectl("apply", "-n", namespace, stdin=manifest(spec))


def patch_status(cluster: KubeCluster, namespace: str, status: dict[str, Any]) -> str:
    """Write status as the operator does: through the status subresource."""
    patch = json.dumps({"status": status})
    return cluster.kubectl(
        "patch", f"ms/{NAME}", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`base` with top-level spec fields replaced (None removes one)."""
    merged = {**base, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def one_line(text: str) -> str:
    """kubectl wraps long lines; compare text with its whitespace collapsed."""
    return " ".join(text.split())


# --- The file itself ---------------------------------------------------------------------


def undescribed(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if schema.get("description") else [path]
    for name, child in schema.get("properties", {}).items():
        missing += undescribed(child, f"{path}.{name}")
    if "items" in schema:
        missing += undescribed(schema["items"], f"{path}[]")
    return missing


def test_every_field_is_described() -> None:
    assert undescribed(crd_schema(), "ms") == []


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `X | None` or `tuple[X, ...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = nested_model(arg)
        if found is not None:
            return found
    return None


def enum_values(annotation: Any) -> set[str] | None:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {str(member.value) for member in annotation}
    for arg in get_args(annotation):
        found = enum_values(arg)
        if found is not None:
            return found
    return None


def contract_mismatches(model: type[BaseModel], schema: dict[str, Any], path: str) -> list[str]:
    """Where the operator's model and the CRD disagree on names, defaults or enums."""
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    properties: dict[str, Any] = schema["properties"]
    if set(fields) != set(properties):
        return [f"{path}: model has {sorted(fields)}, CRD has {sorted(properties)}"]
    mismatches: list[str] = []
    for name, field in fields.items():
        prop = properties[name]
        sub = nested_model(field.annotation)
        if sub is not None:
            item = prop["items"] if prop.get("type") == "array" else prop
            mismatches += contract_mismatches(sub, item, f"{path}.{name}")
            continue
        if "default" in prop and field.default != prop["default"]:
            mismatches.append(f"{path}.{name}: default {field.default!r} != {prop['default']!r}")
        values = enum_values(field.annotation)
        if values is not None and values != set(prop.get("enum", [])):
            mismatches.append(f"{path}.{name}: enum {sorted(values)} != {prop.get('enum')}")
    return mismatches


def test_spec_fields_match_the_operators_model() -> None:
    spec = crd_schema()["properties"]["spec"]
    assert contract_mismatches(ModelServeSpec, spec, "spec") == []


# --- The API server ----------------------------------------------------------------------


@pytest.mark.kube
def test_vllm_manifest_is_accepted_and_defaulted(crds: KubeCluster, namespace: str) -> None:
    apply(crds, namespace, VLLM)

    spec = crds.get_json("ms", NAME, "-n", namespace)["spec"]
    assert spec["replicas"] == 1
    assert spec["resources"] == {"gpus": 1}
    assert spec["model"]["cache"] == {"enabled": False, "size": "50Gi"}
    assert spec["vllm"] == {"gpuMemoryUtilization": 0.9, "prefixCaching": True}
    assert spec["llamacpp"] == {"contextSize": 4096}
    assert spec["scaling"] == {
        "algorithm": "none",
        "budget": 1,
        "rewardAggregation": "min",
        "stepDelimiter": "\n\n",
    }
    assert "servedName" not in spec["model"]  # the operator falls back to metadata.name


@pytest.mark.kube
@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(LLAMACPP, id="llamacpp-on-cpu"),
        pytest.param(with_changes(LLAMACPP, resources={"gpus": 1}), id="llamacpp-on-gpu"),
        pytest.param(with_changes(LLAMACPP, model={"uri": "s3://platform/m.gguf"}), id="no-format"),
        pytest.param(EXTERNAL, id="external"),
        pytest.param(
            with_changes(
                EXTERNAL,
                external={"url": "https://api.example.com/v1", "apiKeySecretRef": {"name": "k"}},
                model={"servedName": "remote"},
            ),
            id="external-with-key",
        ),
        pytest.param(
            with_changes(
                VLLM,
                replicas=0,
                resources={"gpus": 2, "gpuType": "NVIDIA-L4", "cpu": 8, "memory": "32Gi"},
                args=["--max-num-seqs", "64"],
                env=[{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}],
                vllm={"gpuMemoryUtilization": 1, "maxModelLen": 2048},
                scaling={"algorithm": "best-of-n", "budget": 8, "rewardModel": "prm"},
            ),
            id="vllm-everything-set",
        ),
    ],
)
def test_valid_manifests_are_accepted(
    crds: KubeCluster, namespace: str, spec: dict[str, Any]
) -> None:
    assert "created" in apply(crds, namespace, spec)
    stored = crds.get_json("ms", NAME, "-n", namespace)["spec"]
    assert stored["runtime"] == spec["runtime"]


@pytest.mark.kube
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            with_changes(VLLM, runtime="tgi"),
            'spec.runtime: Unsupported value: "tgi"',
            id="unknown-runtime",
        ),
        pytest.param(
            with_changes(VLLM, replicas=-1),
            "spec.replicas in body should be greater than or equal to 0",
            id="negative-replicas",
        ),
        pytest.param(
            with_changes(EXTERNAL, resources={"gpus": 1}),
            "runtime external runs elsewhere and cannot use GPUs of this cluster",
            id="gpus-on-external",
        ),
        pytest.param(
            with_changes(VLLM, resources=None),
            "runtime vllm needs at least one GPU",
            id="vllm-without-gpus",
        ),
        pytest.param(
            with_changes(EXTERNAL, external=None),
            "runtime external needs spec.external.url",
            id="external-without-url",
        ),
        pytest.param(
            with_changes(LLAMACPP, model={"uri": "s3://platform/m/", "format": "safetensors"}),
            "runtime llamacpp only loads GGUF models",
            id="llamacpp-with-safetensors",
        ),
        pytest.param(
            with_changes(LLAMACPP, resources={"gpuType": "NVIDIA-L4"}),
            "spec.resources.gpuType chooses the kind of GPU and only applies when",
            id="gpu-type-without-gpus",
        ),
        pytest.param(
            with_changes(VLLM, model={"format": "safetensors"}),
            "runtime vllm and llamacpp need spec.model.uri",
            id="vllm-without-uri",
        ),
        pytest.param(
            with_changes(VLLM, model={"uri": "https://huggingface.co/x"}),
            "spec.model.uri in body should match",
            id="uri-not-s3",
        ),
        pytest.param(
            with_changes(VLLM, vllm={"gpuMemoryUtilization": 0}),
            "spec.vllm.gpuMemoryUtilization in body should be greater than 0",
            id="no-gpu-memory",
        ),
        pytest.param(
            with_changes(VLLM, resources={"gpus": 1, "memory": "lots"}),
            "spec.resources.memory in body should match",
            id="memory-not-a-quantity",
        ),
        pytest.param(
            with_changes(VLLM, env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
            'spec.env[1]: Duplicate value: {"name":"A"}',
            id="duplicate-env",
        ),
        pytest.param(
            with_changes(VLLM, autoscaling={"minReplicas": 3, "maxReplicas": 2}),
            "spec.autoscaling.minReplicas must not exceed maxReplicas",
            id="autoscaling-min-over-max",
        ),
        pytest.param(
            with_changes(VLLM, autoscaling={"minReplicas": 0, "idleTimeoutSeconds": 1}),
            "spec.autoscaling.idleTimeoutSeconds in body should be greater than or equal to 10",
            id="autoscaling-idle-timeout-too-short",
        ),
        pytest.param(
            with_changes(EXTERNAL, autoscaling={"minReplicas": 0}),
            "runtime external runs elsewhere: the platform cannot scale it",
            id="autoscaling-on-external",
        ),
    ],
)
def test_bad_specs_are_refused_with_a_readable_message(
    crds: KubeCluster, namespace: str, spec: dict[str, Any], expected: str
) -> None:
    with pytest.raises(RuntimeError, match=re.escape(expected)):
        apply(crds, namespace, spec)
    assert crds.get_json("ms", "-n", namespace)["items"] == []


@pytest.mark.kube
@pytest.mark.parametrize("name", ["x" * 51, "9-starts-with-a-digit"])
def test_names_that_cannot_name_a_service_are_refused(
    crds: KubeCluster, namespace: str, name: str
) -> None:
    body = yaml.safe_load(manifest(VLLM))
    body["metadata"]["name"] = name
    with pytest.raises(RuntimeError, match="the name also names the model's Service"):
        crds.kubectl("apply", "-n", namespace, stdin=yaml.safe_dump(body))


@pytest.mark.kube
@pytest.mark.parametrize(
    ("field", "phrase"),
    [
        ("ms.spec.resources", "How many GPUs each replica uses"),
        ("ms.spec.resources", "nvidia.com/gpu.product"),
        ("ms.spec.runtime", "an OpenAI-compatible server that already runs somewhere else"),
        ("modelserves.status.phase", "Degraded: some replicas answer, not all"),
    ],
)
def test_kubectl_explain_prints_the_descriptions(
    crds: KubeCluster, field: str, phrase: str
) -> None:
    def explained() -> str | None:
        # The API server publishes a new CRD's OpenAPI a moment after it is established.
        try:
            return one_line(crds.kubectl("explain", field))
        except RuntimeError:
            return None

    assert phrase in wait_for(explained, timeout=30, what=f"kubectl explain {field}")


EXAMPLES = sorted((CRD_FILE.parents[1] / "docs" / "examples").glob("*.yaml"))


@pytest.mark.kube
@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_the_documented_examples_are_accepted(
    crds: KubeCluster, namespace: str, example: Path
) -> None:
    created = crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(example))
    assert "created (server dry run)" in created


@pytest.mark.kube
def test_autoscaling_is_defaulted(crds: KubeCluster, namespace: str) -> None:
    apply(crds, namespace, with_changes(LLAMACPP, autoscaling={"minReplicas": 0}))

    stored = crds.get_json("ms", NAME, "-n", namespace)["spec"]["autoscaling"]

    assert stored == {
        "minReplicas": 0,
        "maxReplicas": 1,
        "idleTimeoutSeconds": 600,
        "targetRequests": 4,
        "windowSeconds": 60,
        "minResidenceSeconds": 120,
        "pinned": False,
        "priority": 0,
    }
    parsed = ModelServeSpec.model_validate(crds.get_json("ms", NAME, "-n", namespace)["spec"])
    assert parsed.autoscaling is not None and parsed.autoscaling.min_replicas == 0


@pytest.mark.kube
def test_kubectl_scale_changes_spec_replicas(crds: KubeCluster, namespace: str) -> None:
    apply(crds, namespace, VLLM)

    crds.kubectl("scale", "-n", namespace, f"ms/{NAME}", "--replicas=3")

    assert crds.get_json("ms", NAME, "-n", namespace)["spec"]["replicas"] == 3
    with pytest.raises(RuntimeError, match="less than or equal to 100"):
        crds.kubectl("scale", "-n", namespace, f"ms/{NAME}", "--replicas=101")


@pytest.mark.kube
def test_kubectl_get_shows_the_printer_columns(crds: KubeCluster, namespace: str) -> None:
    apply(crds, namespace, VLLM)
    status = {
        "phase": "Ready",
        "endpoint": "http://smollm2.svc:8000",
        "readyReplicas": 1,
        "desiredReplicas": 1,
        "lastRequestTime": "2026-01-02T03:04:05Z",
    }
    patch_status(crds, namespace, status)

    header, row = crds.kubectl("get", "ms", "-n", namespace).splitlines()

    columns = [
        "NAME", "RUNTIME", "MODEL", "REPLICAS", "READY", "PHASE", "LAST-REQUEST", "ENDPOINT", "AGE"
    ]  # fmt: skip
    assert header.split() == columns
    values = dict(zip(columns, row.split(), strict=True))
    assert values.pop("LAST-REQUEST").endswith(("d", "y"))  # a date, shown as its age
    del values["AGE"]
    assert values == {
        "NAME": NAME,
        "RUNTIME": "vllm",
        "MODEL": VLLM["model"]["uri"],
        "REPLICAS": "1",
        "READY": "1",
        "PHASE": "Ready",
        "ENDPOINT": status["endpoint"],
    }


@pytest.mark.kube
def test_kubectl_get_wide_shows_the_nodes_of_a_group(crds: KubeCluster, namespace: str) -> None:
    """A model over several nodes says how many in `-o wide`; one pod per replica, nothing."""

    def nodes_column() -> str:
        header, row = crds.kubectl("get", "ms", "-n", namespace, "-o", "wide").splitlines()
        start, end = header.index("NODES"), header.index("LAST-REQUEST")
        return row[start:end].strip()

    apply(crds, namespace, {**VLLM, "resources": {"gpus": 8, "nodes": 2}})
    assert nodes_column() == "2"
    crds.kubectl("patch", f"ms/{NAME}", "-n", namespace, "--type=json",
                 "-p", '[{"op": "remove", "path": "/spec/resources/nodes"}]')  # fmt: skip
    assert nodes_column() == ""


@pytest.mark.kube
def test_status_is_written_through_its_subresource_only(crds: KubeCluster, namespace: str) -> None:
    apply(crds, namespace, VLLM)
    crds.kubectl("apply", "-n", namespace, stdin=manifest(VLLM, status={"phase": "Ready"}))
    assert "status" not in crds.get_json("ms", NAME, "-n", namespace)

    with pytest.raises(RuntimeError, match='Unsupported value: "Running"'):
        patch_status(crds, namespace, {"phase": "Running"})


@pytest.mark.kube
def test_short_name_lists_modelserves(crds: KubeCluster, namespace: str) -> None:
    apply(crds, namespace, LLAMACPP)
    for resource in ("ms", "modelserves", f"{PLURAL}.{GROUP}"):
        names = crds.kubectl("get", resource, "-n", namespace, "-o", "name").split()
        assert names == [f"modelserve.{GROUP}/{NAME}"]
