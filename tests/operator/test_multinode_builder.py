"""The LeaderWorkerSet of a model spread over several nodes, and the NetworkPolicy that
fences its groups in, checked without a cluster."""

from __future__ import annotations

from typing import Any

from modelserve.common.modelserve import ModelServe
from modelserve.operator.builders import build_deployment, build_service, endpoint
from modelserve.operator.children import build_children, wanted_children
from modelserve.operator.multinode import (
    RAY_PORT,
    WORKER_INDEX_LABEL,
    build_group_policy,
    build_leader_service,
    build_leader_worker_set,
    is_multinode,
    leader_vllm_args,
)
from modelserve.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(
    model_store_endpoint="minio.platform:9000",
    model_store_access_key="ak",  # type: ignore[arg-type]  # pydantic turns str into SecretStr
    model_store_secret_key="sk",  # type: ignore[arg-type]
)


def modelserve(**spec: Any) -> ModelServe:
    return ModelServe.from_body(
        {
            "metadata": {"name": "llama-405b", "namespace": "team-a", "uid": "uid-1"},
            "spec": {
                "runtime": "vllm",
                "model": {"uri": "s3://models/llama-3.1-405b-instruct/"},
                "resources": {"gpus": 8, "nodes": 2, "gpuType": "NVIDIA-H100-80GB-HBM3"},
                "replicas": 3,
                **spec,
            },
        }
    )


def server(template: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = template["spec"]["containers"]
    (container,) = containers
    assert container["name"] == "server"
    return container


def flag(args: list[str] | tuple[str, ...], name: str) -> str:
    assert list(args).count(name) == 1, f"{name} appears once in {args}"
    return args[list(args).index(name) + 1]


def test_one_group_per_replica_of_nodes_pods() -> None:
    lws = build_leader_worker_set(modelserve(), SETTINGS)

    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    assert lws["kind"] == "LeaderWorkerSet"
    assert lws["spec"]["replicas"] == 3
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert build_leader_worker_set(modelserve(), SETTINGS, replicas=0)["spec"]["replicas"] == 0


def test_name_labels_and_owner_are_the_deployments() -> None:
    ms = modelserve()
    lws = build_leader_worker_set(ms, SETTINGS)
    deployment = build_deployment(ms, SETTINGS)

    assert lws["metadata"] == deployment["metadata"]
    (owner,) = lws["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelServe", "uid-1", True)
    template = lws["spec"]["leaderWorkerTemplate"]
    for role in ("leaderTemplate", "workerTemplate"):
        assert (
            template[role]["metadata"]["labels"]
            == deployment["spec"]["template"]["metadata"]["labels"]
        )


def test_whole_groups_restart_and_roll() -> None:
    spec = build_leader_worker_set(modelserve(), SETTINGS)["spec"]

    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["rolloutStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0},
    }
    # No headless Service named as the set: that name is the leader Service's.
    assert spec["networkConfig"] == {"subdomainPolicy": "UniquePerReplica"}


def test_the_leader_starts_a_ray_head_then_vllm_over_ray() -> None:
    ms = modelserve()
    leader = server(
        build_leader_worker_set(ms, SETTINGS)["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    )

    shell, dash_c, script, name, *words = leader["command"]
    assert (shell, dash_c, name) == ("/bin/sh", "-c", "sh")
    assert "args" not in leader
    assert script == f'ray start --head --port={RAY_PORT} && exec "$@"'
    assert words[:3] == ["vllm", "serve", "/models/model"]
    assert flag(words, "--tensor-parallel-size") == "8"
    assert flag(words, "--pipeline-parallel-size") == "2"
    assert flag(words, "--distributed-executor-backend") == "ray"
    # The operator's usual flags, from the same function as a single-node server's.
    assert flag(words, "--served-model-name") == "llama-405b"
    assert flag(words, "--port") == str(SETTINGS.vllm_port)
    assert flag(words, "--host") == "0.0.0.0"
    assert {"name": "ray", "containerPort": RAY_PORT, "protocol": "TCP"} in leader["ports"]
    assert leader["readinessProbe"]["httpGet"] == {"path": "/health", "port": SETTINGS.vllm_port}
    assert leader["startupProbe"]["httpGet"]["path"] == "/health"


def test_explicit_parallelism_and_user_args_reach_vllm() -> None:
    ms = modelserve(parallelism={"tensor": 4, "pipeline": 4}, args=["--max-num-seqs", "64"])
    args = leader_vllm_args(ms, SETTINGS)

    assert flag(args, "--tensor-parallel-size") == "4"
    assert flag(args, "--pipeline-parallel-size") == "4"
    assert args[-2:] == ("--max-num-seqs", "64")


def test_user_args_are_never_part_of_the_shell_s_script() -> None:
    """The script runs `"$@"`: the arguments, the user's among them, are its parameters,
    which no shell parses, even once the kubelet has put a variable's value in one."""
    hostile = ["--chat-template", "{{ x }}; rm -rf /", "--max-num-seqs='$(X)'; id; echo '"]
    ms = modelserve(args=hostile)
    leader = server(
        build_leader_worker_set(ms, SETTINGS)["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    )

    script = leader["command"][2]
    assert script == f'ray start --head --port={RAY_PORT} && exec "$@"'
    assert leader["command"][-3:] == hostile


def test_workers_join_the_leaders_ray_head_and_serve_nothing() -> None:
    worker = server(
        build_leader_worker_set(modelserve(), SETTINGS)["spec"]["leaderWorkerTemplate"][
            "workerTemplate"
        ]
    )

    assert worker["command"] == ["ray", "start", "--address=$(LWS_LEADER_ADDRESS):6379", "--block"]
    for absent in ("args", "ports", "readinessProbe", "startupProbe", "livenessProbe", "lifecycle"):
        assert absent not in worker


def test_every_pod_gets_the_gpus_of_one_node_and_the_model() -> None:
    ms = modelserve(
        resources={"gpus": 8, "nodes": 2, "gpuType": "NVIDIA-H100-80GB-HBM3", "memory": "1Ti"}
    )
    template = build_leader_worker_set(ms, SETTINGS)["spec"]["leaderWorkerTemplate"]

    for role in ("leaderTemplate", "workerTemplate"):
        pod = template[role]["spec"]
        container = server(template[role])
        assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
        assert container["resources"]["requests"] == {"memory": "1Ti"}
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        # Each node loads its part of the model from its own copy of the weights.
        (fetch,) = pod["initContainers"]
        assert fetch["name"] == "fetch-model"
        assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_the_service_selects_the_leaders_only() -> None:
    ms = modelserve()
    service = build_leader_service(ms, SETTINGS)
    plain = build_service(ms, SETTINGS)

    assert service["spec"]["selector"] == {**plain["spec"]["selector"], WORKER_INDEX_LABEL: "0"}
    assert service["metadata"] == plain["metadata"]
    assert service["spec"]["ports"] == plain["spec"]["ports"]
    # The gateway's endpoint is the same Service name as a single-node server's.
    assert endpoint(ms, SETTINGS).startswith(f"http://{service['metadata']['name']}.team-a.svc")


def test_only_a_group_of_two_or_more_is_multinode() -> None:
    assert is_multinode(modelserve())
    single = modelserve(resources={"gpus": 8})
    assert not is_multinode(single)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}
    return bool(selector["matchLabels"].items() <= labels.items())


def test_a_group_accepts_every_port_from_its_own_pods_and_none_from_another_group() -> None:
    """Ray's head (6379) has no authentication, and Ray and NCCL pick their ports at start:
    the policy names pods, not ports, and only those of this server."""
    ms = modelserve()
    policy = build_group_policy(ms)
    other = modelserve().model_copy(update={"name": "llama-405b-x7k2p"})
    lws_labels = {"leaderworkerset.sigs.k8s.io/name": "llama-405b", WORKER_INDEX_LABEL: "1"}

    assert (policy["apiVersion"], policy["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy")
    assert policy["metadata"]["name"] == "llama-405b-group"
    assert (
        policy["metadata"]["ownerReferences"]
        == build_deployment(ms, SETTINGS)["metadata"]["ownerReferences"]
    )
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert "ports" not in rule  # every port
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # the policy's own namespace only
    group = build_leader_worker_set(ms, SETTINGS)["spec"]["leaderWorkerTemplate"]
    for role in ("leaderTemplate", "workerTemplate"):
        pod = {**group[role]["metadata"]["labels"], **lws_labels}
        assert _selects(spec["podSelector"], pod)
        assert _selects(peer["podSelector"], pod)
    others = build_leader_worker_set(other, SETTINGS)["spec"]["leaderWorkerTemplate"]
    stranger = {**others["workerTemplate"]["metadata"]["labels"], **lws_labels}
    assert not _selects(peer["podSelector"], stranger)
    assert not _selects(spec["podSelector"], stranger)


def test_the_fence_comes_before_the_group_and_only_where_it_is_turned_on() -> None:
    fenced = SETTINGS.model_copy(update={"group_network_policy": True})
    ms = modelserve()

    kinds = [child["kind"] for child in build_children(ms, fenced)]
    assert kinds.index("NetworkPolicy") < kinds.index("LeaderWorkerSet")
    assert ("NetworkPolicy", "llama-405b-group") in wanted_children(ms, fenced)
    # Off (the default): none, and one made before is no longer wanted (pruned).
    assert "NetworkPolicy" not in [child["kind"] for child in build_children(ms, SETTINGS)]
    # A one-node server has no group to fence.
    single = modelserve(resources={"gpus": 8})
    assert "NetworkPolicy" not in [child["kind"] for child in build_children(single, fenced)]
