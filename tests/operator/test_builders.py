"""Builders: a ModelServe spec in, Kubernetes objects out, checked without a cluster."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from modelserve.common.modelserve import ModelServe
from modelserve.operator.builders import (
    build_deployment,
    build_route,
    build_service,
    build_store_secret,
    endpoint,
)
from modelserve.operator.children import build_children, wanted_children
from modelserve.operator.refusals import spec_refusal
from modelserve.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(
    model_store_endpoint="minio.platform:9000",
    model_store_access_key="ak",  # type: ignore[arg-type]  # pydantic turns str into SecretStr
    model_store_secret_key="sk",  # type: ignore[arg-type]
)


def modelserve(**spec: Any) -> ModelServe:
    return ModelServe.from_body(
        {
            "metadata": {"name": "m", "namespace": "team-a", "uid": "uid-1", "generation": 3},
            "spec": {
                "runtime": "vllm",
                "model": {"uri": "s3://models/qwen/"},
                "resources": {"gpus": 1},
                **spec,
            },
        }
    )


def server(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_vllm_deployment_asks_for_gpus_and_runs_tensor_parallel() -> None:
    ms = modelserve(resources={"gpus": 2, "gpuType": "NVIDIA-L4"})
    deployment = build_deployment(ms, SETTINGS)
    pod = deployment["spec"]["template"]["spec"]
    container = server(deployment)

    assert container["image"] == SETTINGS.vllm_image
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    args = container["args"]
    assert args[0] == "/models/model"  # a folder model
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--served-model-name") + 1] == "m"
    assert "--enable-prefix-caching" in args
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.9"
    assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert {v["name"] for v in pod["volumes"]} == {"model", "shm", "tmp"}


def test_vllm_follows_no_redirect_of_a_media_url_and_fetches_from_the_listed_domains() -> None:
    """A public media URL the gateway let through may not redirect vLLM into the cluster;
    OPERATOR_VLLM_ALLOWED_MEDIA_DOMAINS, when set, is vLLM's own allowlist."""
    container = server(build_deployment(modelserve(), SETTINGS))
    assert {"name": "VLLM_MEDIA_URL_ALLOW_REDIRECTS", "value": "0"} in container["env"]
    assert "--allowed-media-domains" not in container["args"]

    listed = SETTINGS.model_copy(
        update={"vllm_allowed_media_domains": "upload.wikimedia.org  images.example.com"}
    )
    args = server(build_deployment(modelserve(), listed))["args"]
    at = args.index("--allowed-media-domains")
    assert args[at + 1 : at + 3] == ["upload.wikimedia.org", "images.example.com"]
    llamacpp = server(build_deployment(modelserve(runtime="llamacpp", resources={}), listed))
    assert "--allowed-media-domains" not in llamacpp["args"]
    assert "VLLM_MEDIA_URL_ALLOW_REDIRECTS" not in {env["name"] for env in llamacpp["env"]}


def test_a_server_without_gpus_sees_none_whatever_its_image_says() -> None:
    """CUDA images set NVIDIA_VISIBLE_DEVICES=all: under the NVIDIA container runtime a
    pod that asked for no GPU would see every GPU of its node."""
    for runtime in ("vllm", "llamacpp"):
        cpu = server(build_deployment(modelserve(runtime=runtime, resources={}), SETTINGS))
        assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in cpu["env"], runtime
    gpu = server(build_deployment(modelserve(resources={"gpus": 2}), SETTINGS))
    assert "NVIDIA_VISIBLE_DEVICES" not in {env["name"] for env in gpu["env"]}  # the plugin's


def test_probes_are_on_health_and_startup_is_patient() -> None:
    container = server(build_deployment(modelserve(), SETTINGS))
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": 8000}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 30 * 60


@pytest.mark.parametrize(
    ("minutes", "rollout", "deadline"), [(30, 1800.0, 1800), (60, 900.5, 3600), (5, 900.5, 901)]
)
def test_the_deployment_makes_progress_for_as_long_as_a_model_may_take_to_start(
    minutes: int, rollout: float, deadline: int
) -> None:
    """Kubernetes' default progress deadline (600 s) would call a large model's first
    load Failed."""
    settings = SETTINGS.model_copy(
        update={"startup_minutes": minutes, "rollout_deadline_seconds": rollout}
    )
    assert build_deployment(modelserve(), settings)["spec"]["progressDeadlineSeconds"] == deadline


def test_the_workload_names_the_generation_it_is_applied_for() -> None:
    ms = modelserve().model_copy(update={"generation": 7})
    deployment = build_deployment(ms, SETTINGS)
    assert deployment["metadata"]["labels"]["llm.modelserve.io/generation"] == "7"
    assert "annotations" not in deployment["metadata"]  # they would be a new generation
    # Not on the pods: a change of the spec that changes nothing in them replaces none.
    assert (
        "llm.modelserve.io/generation" not in deployment["spec"]["template"]["metadata"]["labels"]
    )


def test_users_args_come_last_and_replace_our_defaults() -> None:
    ms = modelserve(
        args=["--gpu-memory-utilization=0.5", "--max-num-seqs", "8"], vllm={"prefixCaching": False}
    )
    args = server(build_deployment(ms, SETTINGS))["args"]
    assert args[-3:] == ["--gpu-memory-utilization=0.5", "--max-num-seqs", "8"]
    assert "--gpu-memory-utilization" not in args
    assert "--no-enable-prefix-caching" in args


@pytest.mark.parametrize(("gpus", "image", "offload"), [(0, "server", False), (1, "cuda", True)])
def test_llamacpp_picks_the_cpu_or_cuda_image(gpus: int, image: str, offload: bool) -> None:
    ms = modelserve(
        runtime="llamacpp",
        model={"uri": "s3://models/smol/model.gguf"},
        resources={"gpus": gpus},
        llamacpp={"contextSize": 2048},
    )
    deployment = build_deployment(ms, SETTINGS)
    container = server(deployment)
    expected = SETTINGS.llamacpp_cuda_image if gpus else SETTINGS.llamacpp_image
    assert container["image"] == expected and image in expected
    args = container["args"]
    assert args[args.index("--model") + 1] == "/models/model.gguf"
    assert args[args.index("--ctx-size") + 1] == "2048"
    assert ("--n-gpu-layers" in args) is offload
    assert ("tolerations" in deployment["spec"]["template"]["spec"]) is offload
    assert all(m["name"] != "shm" for m in container["volumeMounts"])


def test_init_step_fetches_the_model_with_urls_from_a_secret_and_no_credential() -> None:
    ms = modelserve()
    files = '{"uri":"s3://models/qwen/","files":[]}'
    secret = build_store_secret(ms, files)
    assert secret["metadata"]["name"] == "m-model-store"
    assert {key: base64.b64decode(value).decode() for key, value in secret["data"].items()} == {
        "files": files
    }
    init = build_deployment(ms, SETTINGS)["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e for e in init["env"]}
    assert set(env) == {"MODEL_URI", "MODEL_DIR", "MODEL_FILES"}
    assert env["MODEL_URI"]["value"] == "s3://models/qwen/"
    assert env["MODEL_FILES"]["valueFrom"]["secretKeyRef"] == {
        "name": "m-model-store",
        "key": "files",
    }
    assert ("Secret", "m-model-store") in wanted_children(ms, SETTINGS)


def test_cache_option_mounts_a_shared_claim() -> None:
    ms = modelserve(model={"uri": "s3://models/qwen/", "cache": {"enabled": True, "size": "80Gi"}})
    children = {(c["kind"], c["metadata"]["name"]): c for c in build_children(ms, SETTINGS)}
    claim = children[("PersistentVolumeClaim", "m-model-cache")]
    assert claim["spec"]["resources"]["requests"]["storage"] == "80Gi"
    volumes = build_deployment(ms, SETTINGS)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model", "persistentVolumeClaim": {"claimName": "m-model-cache"}} in volumes


def test_route_leads_to_the_gateway_with_the_path_kept() -> None:
    ms = modelserve()
    (route,) = build_route(ms, SETTINGS)
    rule = route["spec"]["routes"][0]
    assert rule["match"] == "PathPrefix(`/uid-1/`)"
    assert "middlewares" not in rule  # the gateway authenticates and strips nothing
    assert rule["services"] == [
        {"name": "modelserve-gateway", "namespace": "modelserve", "port": 8200}
    ]


def test_route_to_a_traefik_service_of_another_provider() -> None:
    settings = SETTINGS.model_copy(update={"route_service": "modelserve-gateway@file"})
    (route,) = build_route(modelserve(), settings)
    assert route["spec"]["routes"][0]["services"] == [
        {"name": "modelserve-gateway@file", "kind": "TraefikService"}
    ]


def test_a_route_has_the_platform_route_s_host_middlewares_and_tls() -> None:
    """A per-server route is no way around what the platform's own route to the gateway
    has (the chart's ingressRoute): its host, its middlewares (named in their namespace:
    the route lives in the server's) and its TLS."""
    settings = SETTINGS.model_copy(
        update={
            "route_host": "llm.example.com",
            "route_middlewares": "edge/ip-allowlist, rate-limit",
            "route_tls": True,
        }
    )
    (route,) = build_route(modelserve(), settings)
    rule = route["spec"]["routes"][0]
    assert rule["match"] == "Host(`llm.example.com`) && PathPrefix(`/uid-1/`)"
    assert rule["middlewares"] == [
        {"name": "ip-allowlist", "namespace": "edge"},
        {"name": "rate-limit", "namespace": "modelserve"},
    ]
    assert route["spec"]["tls"] == {}  # the certificate Traefik has for the host
    resolved = settings.model_copy(update={"route_tls_cert_resolver": "letsencrypt"})
    (route,) = build_route(modelserve(), resolved)
    assert route["spec"]["tls"] == {"certResolver": "letsencrypt"}
    # By default: any host, no middleware, no TLS.
    (plain,) = build_route(modelserve(), SETTINGS)
    assert "tls" not in plain["spec"]


@pytest.mark.parametrize("host", ["a`) || PathPrefix(`/", "-x.example.com", "a..b", "x" * 64])
def test_a_route_host_must_be_a_host_name(host: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        OperatorSettings.model_validate({**SETTINGS.model_dump(), "route_host": host})
    assert OperatorSettings.model_validate({"route_host": "LLM.Example.com"}).route_host == (
        "llm.example.com"
    )


def test_a_replaced_replica_drains_before_it_stops() -> None:
    pod = build_deployment(modelserve(), SETTINGS)["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["lifecycle"] == {"preStop": {"sleep": {"seconds": SETTINGS.drain_seconds}}}
    assert pod["terminationGracePeriodSeconds"] > SETTINGS.drain_seconds


def test_every_child_is_owned_by_the_modelserve() -> None:
    for child in build_children(modelserve(), SETTINGS):
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelServe", "uid-1", True)
        assert child["metadata"]["namespace"] == "team-a"


def test_service_and_endpoint_agree() -> None:
    ms = modelserve()
    assert build_service(ms, SETTINGS)["spec"]["ports"][0]["port"] == 8000
    assert endpoint(ms, SETTINGS) == "http://m.team-a.svc.cluster.local:8000/v1"


def test_external_runs_nothing_in_the_cluster() -> None:
    ms = modelserve(runtime="external", resources={}, external={"url": "https://x.example/v1/"})
    assert build_children(ms, SETTINGS) == []
    assert wanted_children(ms, SETTINGS) == set()
    assert endpoint(ms, SETTINGS) == "https://x.example/v1"


@pytest.mark.parametrize("runtime", ["vllm", "llamacpp"])
def test_model_server_pods_run_without_privileges_or_a_token(runtime: str) -> None:
    pod = build_deployment(modelserve(runtime=runtime), SETTINGS)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in [*pod["initContainers"], *pod["containers"]]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
        # What a runtime writes goes to an emptyDir: /tmp, writable.
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/tmp"]["name"] == "tmp"
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


@pytest.mark.parametrize(
    ("runtime", "spec", "named"),
    [
        ("llamacpp", {"args": ["--ctx-size", "512", "-hf", "evil/model"]}, "'-hf'"),
        ("llamacpp", {"args": ["--model=/etc/passwd"]}, "'--model=/etc/passwd'"),
        ("vllm", {"args": ["--served_model_name", "gpt-4"]}, "'--served_model_name'"),
        ("llamacpp", {"env": [{"name": "LLAMA_ARG_HF_REPO", "value": "x"}]}, "LLAMA_ARG_HF_REPO"),
    ],
)
def test_args_that_set_an_operator_owned_flag_are_refused(
    runtime: str, spec: dict[str, Any], named: str
) -> None:
    refusal = spec_refusal(modelserve(runtime=runtime, **spec))
    assert refusal is not None
    assert (refusal.condition, refusal.reason) == ("Ready", "OwnedFlag")
    assert named in refusal.message
    assert spec_refusal(modelserve(runtime=runtime, args=["--max-num-seqs", "8"])) is None
