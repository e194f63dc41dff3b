"""LoRA adapters (spec.adapters): the runtimes' flags, the spec's checks in the model and at
the real API server, and on the simulated cluster (KWOK nodes) the operator's Deployment
and the store Secret from which the init step fetches each adapter beside the model."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from modelserve.common.modelserve import GROUP, KIND, VERSION, ModelServe
from modelserve.operator.builders import build_deployment
from modelserve.operator.fetch import fetch, parse_files
from modelserve.operator.model_listing import adapter_files
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.store import ModelFile
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator
from modelserve.testbed.polling import wait_for
from modelserve.testbed.seeding import tag_as_recorded
from modelserve.testbed.testing_operator import get, wait_phase

SETTINGS = OperatorSettings(
    model_store_endpoint="minio.platform:9000",
    model_store_access_key="ak",  # type: ignore[arg-type]  # pydantic turns str into SecretStr
    model_store_secret_key="sk",  # type: ignore[arg-type]
)
BUCKET = "inference-models"
MODEL_URI = f"s3://{BUCKET}/models/lora-test/"
GGUF_URI = f"s3://{BUCKET}/models/lora-test/model.gguf"
PIRATE_URI = f"s3://{BUCKET}/models/lora-pirate/"
POET_URI = f"s3://{BUCKET}/models/lora-poet/"


def modelserve(runtime: str = "vllm", name: str = "m", **spec: Any) -> ModelServe:
    uri = MODEL_URI if runtime == "vllm" else GGUF_URI
    base: dict[str, Any] = {"runtime": runtime, "model": {"uri": uri}}
    if runtime == "vllm":
        base["resources"] = {"gpus": 1}
    return ModelServe.from_body(
        {
            "metadata": {"name": name, "namespace": "team-a", "uid": "uid-1", "generation": 1},
            "spec": {**base, **spec},
        }
    )


def server_args(ms: ModelServe) -> list[str]:
    pod = build_deployment(ms, SETTINGS)["spec"]["template"]["spec"]
    args: list[str] = pod["containers"][0]["args"]
    return args


# --- The builders and the spec model -----------------------------------------------------


def test_llamacpp_loads_every_adapter_at_scale_zero_in_one_flag() -> None:
    """A request without `lora` gets the model unchanged; the gateway sets each request's
    scales by the adapters' order here."""
    ms = modelserve(
        "llamacpp",
        adapters=[
            {"name": "pirate", "uri": f"s3://{BUCKET}/models/lora-pirate/p.gguf"},
            {"name": "poet", "uri": f"s3://{BUCKET}/models/lora-poet/p.gguf", "scale": 0.5},
        ],
    )
    args = server_args(ms)
    at = args.index("--lora-scaled")
    assert args[at + 1] == "/models/adapters/pirate.gguf:0,/models/adapters/poet.gguf:0"
    assert args.count("--lora-scaled") == 1 and "--lora" not in args


def test_vllm_serves_each_adapter_under_its_name() -> None:
    ms = modelserve(
        adapters=[{"name": "pirate", "uri": PIRATE_URI}, {"name": "poet", "uri": POET_URI}]
    )
    args = server_args(ms)
    assert "--enable-lora" in args
    at = args.index("--lora-modules")
    assert args[at + 1 : at + 3] == [
        "pirate=/models/adapters/pirate",
        "poet=/models/adapters/poet",
    ]


def test_without_adapters_no_lora_flag() -> None:
    for ms in (modelserve(), modelserve("llamacpp")):
        assert not [arg for arg in server_args(ms) if "lora" in arg]


@pytest.mark.parametrize(
    ("runtime", "spec", "message"),
    [
        pytest.param(
            "vllm",
            {"adapters": [{"name": "a", "uri": PIRATE_URI}, {"name": "a", "uri": POET_URI}]},
            "spec.adapters names 'a' twice",
            id="twice",
        ),
        pytest.param(
            "vllm",
            {
                "model": {"uri": MODEL_URI, "servedName": "smol"},
                "adapters": [{"name": "smol", "uri": PIRATE_URI}],
            },
            "an adapter may not be named 'smol', the served name of the model itself",
            id="served-name",
        ),
        pytest.param(
            "vllm",
            {"adapters": [{"name": "m", "uri": PIRATE_URI}]},
            "an adapter may not be named 'm'",
            id="object-name",
        ),
        pytest.param(
            "llamacpp",
            {"adapters": [{"name": "a", "uri": PIRATE_URI}]},
            "runtime llamacpp loads an adapter from one GGUF file",
            id="llamacpp-folder",
        ),
        pytest.param(
            "vllm",
            {"adapters": [{"name": "a", "uri": f"{PIRATE_URI}a.safetensors"}]},
            "runtime vllm loads an adapter from a folder in PEFT layout",
            id="vllm-file",
        ),
        pytest.param(
            "vllm",
            {"adapters": [{"name": "a=b", "uri": PIRATE_URI}]},
            "adapter name 'a=b'",
            id="name",
        ),
    ],
)
def test_the_spec_model_refuses_adapters_that_cannot_work(
    runtime: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        modelserve(runtime, **spec)


def test_external_servers_take_no_adapters() -> None:
    with pytest.raises(ValidationError, match=re.escape("leave out spec.adapters")):
        ModelServe.from_body(
            {
                "metadata": {"name": "m", "namespace": "team-a", "uid": "uid-1"},
                "spec": {
                    "runtime": "external",
                    "external": {"url": "http://x/v1"},
                    "adapters": [{"name": "a", "uri": PIRATE_URI}],
                },
            }
        )


def test_adapter_files_land_in_their_own_folder() -> None:
    """A GGUF adapter as `adapters/<name>.gguf` whatever its key; a folder's layout kept."""
    gguf = modelserve(
        "llamacpp", adapters=[{"name": "pirate", "uri": f"s3://{BUCKET}/x/a,b:1.gguf"}]
    )
    placed = adapter_files(
        gguf, gguf.spec.adapters[0], [ModelFile("x/a,b:1.gguf", "a,b:1.gguf", "0" * 64)]
    )
    assert [file.path for file in placed] == ["adapters/pirate.gguf"]
    folder = modelserve(adapters=[{"name": "poet", "uri": POET_URI}])
    keys = ["models/lora-poet/adapter_config.json", "models/lora-poet/sub/w.safetensors"]
    placed = adapter_files(
        folder, folder.spec.adapters[0], [ModelFile(key, "x", "0" * 64) for key in keys]
    )
    assert [file.path for file in placed] == [
        "adapters/poet/adapter_config.json",
        "adapters/poet/sub/w.safetensors",
    ]


# --- The API server ----------------------------------------------------------------------


def manifest(name: str, spec: dict[str, Any]) -> str:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name}}
    return yaml.safe_dump({**body, "spec": spec})


VLLM: dict[str, Any] = {"runtime": "vllm", "model": {"uri": MODEL_URI}, "resources": {"gpus": 1}}
LLAMACPP: dict[str, Any] = {"runtime": "llamacpp", "model": {"uri": GGUF_URI}}


@pytest.mark.kube
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {
                **VLLM,
                "adapters": [{"name": "a", "uri": PIRATE_URI}, {"name": "a", "uri": POET_URI}],
            },
            "two adapters in spec.adapters have the same name: each needs a name of its own",
            id="twice",
        ),
        pytest.param(
            {**VLLM, "adapters": [{"name": "lora-crd", "uri": PIRATE_URI}]},
            "an adapter may not be named as the model itself",
            id="object-name",
        ),
        pytest.param(
            {
                **VLLM,
                "model": {"uri": MODEL_URI, "servedName": "smol"},
                "adapters": [{"name": "smol", "uri": PIRATE_URI}],
            },
            "spec.adapters: Invalid value",
            id="served-name",
        ),
        pytest.param(
            {**VLLM, "adapters": [{"name": "-pirate", "uri": PIRATE_URI}]},
            "an adapter's name is 1 to 63 letters, digits, '-', '.' and '_'",
            id="name",
        ),
        pytest.param(
            {**LLAMACPP, "adapters": [{"name": "pirate", "uri": PIRATE_URI}]},
            "runtime llamacpp loads each adapter from one GGUF file",
            id="llamacpp-folder",
        ),
        pytest.param(
            {**VLLM, "adapters": [{"name": "pirate", "uri": f"{PIRATE_URI}w.safetensors"}]},
            "runtime vllm loads each adapter from a folder in PEFT layout",
            id="vllm-file",
        ),
        pytest.param(
            {
                "runtime": "external",
                "external": {"url": "http://llm.default.svc:8080/v1"},
                "adapters": [{"name": "pirate", "uri": PIRATE_URI}],
            },
            "runtime external runs elsewhere: the platform loads no adapter into it",
            id="external",
        ),
        pytest.param(
            {**VLLM, "adapters": [{"name": "pirate", "uri": "http://elsewhere/a/"}]},
            "spec.adapters[0].uri in body should match",
            id="uri",
        ),
    ],
)
def test_adapters_that_cannot_work_are_refused_with_a_readable_message(
    crds: KubeCluster, namespace: str, spec: dict[str, Any], expected: str
) -> None:
    with pytest.raises(RuntimeError) as refused:
        crds.kubectl("apply", "-n", namespace, stdin=manifest("lora-crd", spec))
    assert expected in " ".join(str(refused.value).split())
    assert crds.get_json("ms", "-n", namespace)["items"] == []


@pytest.mark.kube
def test_the_served_name_rule_names_the_field(crds: KubeCluster, namespace: str) -> None:
    spec = {
        **VLLM,
        "model": {"uri": MODEL_URI, "servedName": "smol"},
        "adapters": [{"name": "smol", "uri": PIRATE_URI}],
    }
    with pytest.raises(RuntimeError) as refused:
        crds.kubectl("apply", "-n", namespace, stdin=manifest("lora-crd", spec))
    text = " ".join(str(refused.value).split())
    assert "spec.adapters: Invalid value" in text
    assert "an adapter may not be named as the model itself (spec.model.servedName" in text


# --- The operator on the simulated cluster -----------------------------------------------


def put_recorded(store: MinioServer, key: str, data: bytes, model_id: str) -> str:
    client = store.client()
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    client.put_object(BUCKET, key, io.BytesIO(data), len(data))
    digest = hashlib.sha256(data).hexdigest()
    tag_as_recorded(client, BUCKET, key, digest, model_id)
    return digest


@pytest.fixture(scope="module")
def adapters_in_store(platform_store: MinioServer) -> dict[str, bytes]:
    """The model and two PEFT-layout adapters in the store, as downloads leave them."""
    files = {
        "models/lora-test/config.json": b"{}",
        "models/lora-pirate/adapter_config.json": b'{"r": 8}',
        "models/lora-pirate/adapter_model.safetensors": b"pirate weights",
        "models/lora-poet/adapter_config.json": b'{"r": 4}',
        "models/lora-poet/adapter_model.safetensors": b"poet weights",
    }
    for key, data in files.items():
        put_recorded(platform_store, key, data, key.split("/")[1])
    return files


@pytest.mark.kube
def test_the_deployment_loads_the_adapters_the_init_step_fetches(
    crds: KubeCluster,
    namespace: str,
    operator: RunningOperator,
    adapters_in_store: dict[str, bytes],
    tmp_path: Path,
) -> None:
    """The server's flags name each adapter where the init step leaves it, and the store
    Secret the init step reads lists the adapters' files beside the model's: fetched as a
    pod does (plain GETs of the presigned URLs, each file checked), they land there."""
    spec = {
        **VLLM,
        "model": {"uri": MODEL_URI, "servedName": "lora-base"},
        "adapters": [{"name": "pirate", "uri": PIRATE_URI}, {"name": "poet", "uri": POET_URI}],
    }
    crds.kubectl("apply", "-n", namespace, stdin=manifest("adapted", spec))
    wait_phase(crds, namespace, "adapted", "Ready")

    pod = get(crds, namespace, "deployment", "adapted")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    at = args.index("--lora-modules")
    assert args[at + 1 : at + 3] == ["pirate=/models/adapters/pirate", "poet=/models/adapters/poet"]
    assert "--enable-lora" in args
    (fetch_step,) = pod["initContainers"]
    assert fetch_step["command"] == ["modelserve-fetch-model"]

    secret = get(crds, namespace, "secret", "adapted-model-store")
    listing = base64.b64decode(secret["data"]["files"]).decode()
    assert sorted(f["path"] for f in json.loads(listing)["files"]) == [
        "adapters/pirate/adapter_config.json",
        "adapters/pirate/adapter_model.safetensors",
        "adapters/poet/adapter_config.json",
        "adapters/poet/adapter_model.safetensors",
        "model/config.json",
    ]
    with httpx.Client(follow_redirects=False) as http:
        fetch(http, MODEL_URI, parse_files(listing, tmp_path), tmp_path)
    for key, data in adapters_in_store.items():
        _, _, rest = key.partition("/")
        folder, _, name = rest.partition("/")
        place = "model" if folder == "lora-test" else f"adapters/{folder.removeprefix('lora-')}"
        assert (tmp_path / place / name).read_bytes() == data


@pytest.mark.kube
def test_an_adapter_that_is_not_a_recorded_download_refuses_the_modelserve(
    crds: KubeCluster,
    namespace: str,
    operator: RunningOperator,
    adapters_in_store: dict[str, bytes],
) -> None:
    missing = f"s3://{BUCKET}/models/lora-missing-{uuid.uuid4().hex[:6]}/"
    spec = {
        **VLLM,
        "adapters": [{"name": "pirate", "uri": PIRATE_URI}, {"name": "gone", "uri": missing}],
    }
    crds.kubectl("apply", "-n", namespace, stdin=manifest("unfetchable", spec))
    status = wait_phase(crds, namespace, "unfetchable", "Failed")
    assert status["message"].startswith(f"adapter 'gone': no objects under {missing}")
    available = next(c for c in status["conditions"] if c["type"] == "ModelAvailable")
    assert (available["status"], available["reason"]) == ("False", "NotRecorded")
    assert not get(crds, namespace, "deployments")["items"]

    # Once the adapter is in the store, the next converge (the spec changed) runs it.
    def deployed() -> bool:
        return bool(get(crds, namespace, "deployments")["items"])

    crds.kubectl(
        "patch", "ms", "unfetchable", "-n", namespace, "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/adapters/1"}]),
    )  # fmt: skip
    wait_for(deployed, timeout=60, what="the Deployment once the missing adapter is gone")
