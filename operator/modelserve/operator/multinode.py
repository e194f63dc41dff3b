"""A model spread over several nodes: the LeaderWorkerSet, the leader-only Service and the
group's NetworkPolicy.

With `spec.resources.nodes` one replica is a group of pods (LeaderWorkerSet,
`sigs.k8s.io/lws`): the leader starts a Ray head and then vLLM's server, the other pods
join the leader's Ray cluster as workers, and vLLM places its tensor- and pipeline-parallel
workers on every GPU of the group. Pure builders, as in `builders`: the pod template is the
Deployment's (model fetch, volumes, security, placement, resources), with the server
container's command changed.

Where each flag is documented (checked December 2026):
- `ray start --head --port=6379` and `ray start --address=HOST:6379 --block`: Ray's
  "Cluster Management CLI" page (docs.ray.io, cluster/cli, `ray start`: 6379 is the head's
  default port; `--block` keeps the command in the foreground, so the container lives as
  long as the Ray node) and vLLM's "Distributed inference and
  serving" page, which starts the head with `ray start --head` and workers with
  `ray start --address=<head address>`.
- `--tensor-parallel-size`, `--pipeline-parallel-size`, `--distributed-executor-backend ray`:
  vLLM's engine arguments (docs.vllm.ai, "Engine Arguments"); "Parallelism and Scaling"
  advises, for a model larger than one node, tensor = GPUs per node and pipeline = nodes
  (its example: 8 and 2 on two 8-GPU nodes), and says multi-node serving uses Ray.
- `LWS_LEADER_ADDRESS`, the labels `leaderworkerset.sigs.k8s.io/worker-index` ("0" on the
  leader) and the restart, rollout, startup and subdomain policies: LeaderWorkerSet's API
  (kubernetes-sigs/lws v0.7.0, api/leaderworkerset/v1/leaderworkerset_types.go).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelserve.common.modelserve import SERVER_CONTAINER, ModelServe
from modelserve.operator.builders import (
    MANAGED_BY,
    NAME_LABEL,
    OPERATOR,
    build_deployment,
    build_service,
    child_metadata,
)
from modelserve.operator.runtimes import vllm_container
from modelserve.operator.settings import OperatorSettings

if TYPE_CHECKING:  # status reads this module's labels
    from modelserve.operator.status import PodView

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_KIND = "LeaderWorkerSet"
# LeaderWorkerSet labels every pod with its index in the group; the leader's is "0".
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
LEADER_INDEX = "0"
# ... and with the index of its group: scaling down removes the groups of the highest.
GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
# The Ray head's port (Ray's default GCS port), on the leader; workers reach it through
# LWS_LEADER_ADDRESS, which LeaderWorkerSet sets in every container of a group.
RAY_PORT = 6379
NETWORK_POLICY_API_VERSION = "networking.k8s.io/v1"
NETWORK_POLICY_KIND = "NetworkPolicy"

Obj = dict[str, Any]


def is_multinode(ms: ModelServe) -> bool:
    return ms.spec.group_size >= 2


def leaders_to_drain(pods: Sequence[PodView], keep: int) -> tuple[str, ...] | None:
    """The leaders of the groups that go when a model over several nodes scales down to
    `keep` groups, the highest index first: LeaderWorkerSet removes the groups of the
    highest indexes (its leaders' StatefulSet removes the highest ordinals), and only a
    leader serves HTTP. None when a fence cannot be built: a group that goes has no Ready
    leader (it takes no request anyway), or none goes."""
    going = sorted(
        (pod for pod in pods if pod.leader_of is not None and pod.leader_of >= keep),
        key=lambda pod: -(pod.leader_of or 0),
    )
    if not going or not all(pod.ready for pod in going):
        return None
    return tuple(pod.name for pod in going)


def leader_vllm_args(ms: ModelServe, settings: OperatorSettings) -> tuple[str, ...]:
    """`vllm serve`'s arguments for the leader: the operator's usual ones (model path, port,
    served name, memory, prefix caching, adapters and the user's args, from
    `runtimes.vllm_container`), with the group's parallelism and the Ray backend. They are
    given as the user's args would be, so they replace the single-node tensor size; the
    spec model and the CRD refuse user args that set them."""
    parallel = (
        "--tensor-parallel-size",
        str(ms.spec.tensor_parallel_size),
        "--pipeline-parallel-size",
        str(ms.spec.pipeline_parallel_size),
        "--distributed-executor-backend",
        "ray",
    )
    spec = ms.spec.model_copy(update={"args": (*parallel, *ms.spec.args)})
    return vllm_container(ms.model_copy(update={"spec": spec}), settings).args


def _leader_command(ms: ModelServe, settings: OperatorSettings) -> list[str]:
    # `exec`: vLLM becomes the shell's process and gets the pod's SIGTERM. vLLM waits for
    # the workers' GPUs to join the Ray cluster before it loads the model. Its arguments
    # (the user's among them) are the script's own ("$@"), never a part of its text: no
    # shell parses them, whatever the kubelet put in them.
    script = f'ray start --head --port={RAY_PORT} && exec "$@"'
    return ["/bin/sh", "-c", script, "sh", "vllm", "serve", *leader_vllm_args(ms, settings)]


def _worker_command() -> list[str]:
    # $(LWS_LEADER_ADDRESS) is expanded by the kubelet from the container's environment.
    return ["ray", "start", f"--address=$(LWS_LEADER_ADDRESS):{RAY_PORT}", "--block"]


def _template(ms: ModelServe, settings: OperatorSettings) -> Obj:
    """The Deployment's pod template, whose server container each role then changes."""
    template: Obj = copy.deepcopy(build_deployment(ms, settings)["spec"]["template"])
    return template


def _server(template: Obj) -> Obj:
    containers: list[Obj] = template["spec"]["containers"]
    return next(c for c in containers if c["name"] == SERVER_CONTAINER)


def build_leader_template(ms: ModelServe, settings: OperatorSettings) -> Obj:
    """The leader: Ray head, then vLLM's OpenAI server with the Deployment's probes on
    /health (Ready only once vLLM has loaded the model on every GPU of the group)."""
    template = _template(ms, settings)
    server = _server(template)
    server["command"] = _leader_command(ms, settings)
    server.pop("args", None)
    server["ports"].append({"name": "ray", "containerPort": RAY_PORT, "protocol": "TCP"})
    return template


def build_worker_template(ms: ModelServe, settings: OperatorSettings) -> Obj:
    """A worker: a Ray node joined to the leader's head, its GPUs used by vLLM's workers.
    No HTTP server runs here, so no probe and no drain: the group's readiness is the
    leader's, and a worker that dies recreates the whole group."""
    template = _template(ms, settings)
    server = _server(template)
    server["command"] = _worker_command()
    for field in ("args", "ports", "startupProbe", "readinessProbe", "livenessProbe"):
        server.pop(field, None)
    server.pop("lifecycle", None)
    return template


def build_leader_worker_set(
    ms: ModelServe, settings: OperatorSettings, replicas: int | None = None
) -> Obj:
    """The LeaderWorkerSet of `ms`: `replicas` groups (None: spec.replicas) of
    spec.resources.nodes pods each, with the Deployment's name, labels and owner."""
    deployment = build_deployment(ms, settings, replicas)
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": LWS_KIND,
        "metadata": deployment["metadata"],
        "spec": {
            "replicas": deployment["spec"]["replicas"],
            # Workers start with the leader: the leader is Ready only once they joined.
            "startupPolicy": "LeaderCreated",
            # A pod or container restart recreates the whole group: vLLM over Ray cannot
            # take a worker back, and no partial group may serve.
            "leaderWorkerTemplate": {
                "size": ms.spec.group_size,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": build_leader_template(ms, settings),
                "workerTemplate": build_worker_template(ms, settings),
            },
            # A spec change replaces whole groups, one at a time and without a surge group
            # (GPUs are scarce), as the Deployment replaces pods.
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0},
            },
            # One headless Service per group: with the default (Shared) LeaderWorkerSet
            # would want a Service named as the set, which is the leader Service's name.
            "networkConfig": {"subdomainPolicy": "UniquePerReplica"},
        },
    }


def build_leader_service(ms: ModelServe, settings: OperatorSettings) -> Obj:
    """The Service the gateway sends requests to (`builders.endpoint`): the Deployment's
    Service, selecting only the leaders, the pods that serve HTTP."""
    service = build_service(ms, settings)
    service["spec"]["selector"] = {**service["spec"]["selector"], WORKER_INDEX_LABEL: LEADER_INDEX}
    return service


def group_policy_name(ms: ModelServe) -> str:
    return f"{ms.name}-group"


def build_group_policy(ms: ModelServe) -> Obj:
    """The fence of a server's groups (OPERATOR_GROUP_NETWORK_POLICY): its pods accept
    connections on any port from its own pods, and from no other pod by this policy.

    The workers join the leader's Ray head (6379, with no authentication), and Ray and NCCL
    then connect both ways on ports they choose at start, so no port list will do; what
    this policy does name is whose pods: those the operator labelled with this server's
    name, which no other ModelServe's pods carry. The gateway's requests (and Prometheus's
    scrapes) come in by the policy the chart puts on every model server's pods."""
    own = {MANAGED_BY: OPERATOR, NAME_LABEL: ms.name}
    return {
        "apiVersion": NETWORK_POLICY_API_VERSION,
        "kind": NETWORK_POLICY_KIND,
        "metadata": child_metadata(ms, group_policy_name(ms)),
        "spec": {
            "podSelector": {"matchLabels": own},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": dict(own)}}]}],
        },
    }
