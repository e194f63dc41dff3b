"""Pure builders: a ModelServe in, the Kubernetes objects it needs out (as dicts).

Nothing here talks to the cluster; the handlers apply what these return.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from modelserve.common.modelserve import (
    FETCH_CONTAINER,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    SERVER_CONTAINER,
    SERVER_LABEL,
    ModelServe,
    Runtime,
)
from modelserve.operator.runtimes import MODEL_DIR, ServerContainer, server_container
from modelserve.operator.settings import OperatorSettings

OPERATOR = "modelserve-operator"
NAME_LABEL = SERVER_LABEL
RUNTIME_LABEL = "llm.modelserve.io/runtime"
# On the workload: the ModelServe generation it was last applied for, so that a status
# computed from a workload not yet showing a spec change does not claim that change. A
# label: a Deployment's annotations count as its spec (a change of them is a new
# generation of the Deployment, and they are copied to its ReplicaSets).
GENERATION_LABEL = "llm.modelserve.io/generation"
MANAGED_BY = "app.kubernetes.io/managed-by"
# Every container of a model-server pod: no privilege to gain, no capability, nothing
# written outside its volumes (/tmp is an emptyDir).
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}

Obj = dict[str, Any]


def labels(ms: ModelServe) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modelserve-server",
        "app.kubernetes.io/instance": ms.name,
        MANAGED_BY: OPERATOR,
        NAME_LABEL: ms.name,
        RUNTIME_LABEL: ms.spec.runtime.value,
    }


def selector(ms: ModelServe) -> dict[str, str]:
    return {NAME_LABEL: ms.name}


def selector_string(ms: ModelServe) -> str:
    return ",".join(f"{key}={value}" for key, value in selector(ms).items())


def child_metadata(ms: ModelServe, name: str) -> Obj:
    return {
        "name": name,
        "namespace": ms.namespace,
        "labels": labels(ms),
        "ownerReferences": [
            {
                "apiVersion": "llm.modelserve.io/v1alpha1",
                "kind": "ModelServe",
                "name": ms.name,
                "uid": ms.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def progress_deadline(settings: OperatorSettings) -> int:
    """The Deployment's progressDeadlineSeconds: the start-up probe's allowance or the
    rollout deadline, whichever is longer (Kubernetes' default, 600 s, is shorter than
    a large model's load)."""
    return max(settings.startup_minutes * 60, math.ceil(settings.rollout_deadline_seconds))


def store_secret_name(ms: ModelServe) -> str:
    return f"{ms.name}-model-store"


def cache_claim_name(ms: ModelServe) -> str:
    return f"{ms.name}-model-cache"


def endpoint(ms: ModelServe, settings: OperatorSettings) -> str:
    """The URL the gateway sends OpenAI requests to (ends in /v1)."""
    if ms.spec.runtime is Runtime.EXTERNAL:
        assert ms.spec.external is not None  # the CRD requires it
        return ms.spec.external.url.rstrip("/")
    port = server_container(ms, settings).port
    return f"http://{ms.name}.{ms.namespace}.svc.cluster.local:{port}/v1"


def route_prefix(ms: ModelServe) -> str:
    return f"/{ms.server_id}"


def build_store_secret(ms: ModelServe, files: str) -> Obj:
    """What the init step may fetch, in the ModelServe's namespace: presigned GET URLs of
    exactly this model's objects and the SHA-256 each must have (`files`, JSON from
    `store.ModelStore.presign`). No credential of the store: the URLs expire, and the
    operator signs new ones before they do."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_metadata(ms, store_secret_name(ms)),
        "type": "Opaque",
        # `data`, not `stringData`: a write-only field would make every apply a change.
        "data": {"files": base64.b64encode(files.encode()).decode()},
    }


def build_cache_claim(ms: ModelServe) -> Obj:
    cache = ms.spec.model.cache
    spec: Obj = {
        # Every replica mounts the same cache, on whichever node it runs.
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": cache.size}},
    }
    if cache.storage_class_name:
        spec["storageClassName"] = cache.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": child_metadata(ms, cache_claim_name(ms)),
        "spec": spec,
    }


def _fetch_container(ms: ModelServe, settings: OperatorSettings) -> Obj:
    return {
        "name": FETCH_CONTAINER,
        "image": settings.fetch_image,
        "command": ["modelserve-fetch-model"],
        "env": [
            {"name": "MODEL_URI", "value": ms.spec.model.uri},
            {"name": "MODEL_DIR", "value": str(MODEL_DIR)},
            # Read when the container starts: a restarted pod gets the latest URLs.
            {
                "name": "MODEL_FILES",
                "valueFrom": {"secretKeyRef": {"name": store_secret_name(ms), "key": "files"}},
            },
        ],
        "volumeMounts": [
            {"name": "model", "mountPath": str(MODEL_DIR)},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": CONTAINER_SECURITY,
        # A failed fetch says why in the pod's status, not only in its logs.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _probe(path: str, port: int, period: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def _server_container(ms: ModelServe, settings: OperatorSettings, server: ServerContainer) -> Obj:
    resources: Obj = {}
    requests = {
        key: value
        for key, value in (("cpu", ms.spec.resources.cpu), ("memory", ms.spec.resources.memory))
        if value
    }
    if requests:
        resources["requests"] = requests
    limits = {
        key: value
        for key, value in (
            ("cpu", ms.spec.resources.cpu_limit),
            ("memory", ms.spec.resources.memory_limit),
        )
        if value
    }
    no_gpu = not ms.spec.resources.gpus
    if not no_gpu:
        limits[GPU_RESOURCE] = str(ms.spec.resources.gpus)
    if limits:
        resources["limits"] = limits
    mounts = [
        {"name": "model", "mountPath": str(MODEL_DIR), "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if ms.spec.runtime is Runtime.VLLM:
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    container: Obj = {
        "name": SERVER_CONTAINER,
        "image": ms.spec.image or server.image,
        "args": list(server.args),
        "ports": [{"name": "http", "containerPort": server.port, "protocol": "TCP"}],
        # The root filesystem is read-only and the user has no home in the image: caches
        # (vLLM's, Triton's, Hugging Face's) go below $HOME, on the /tmp emptyDir.
        "env": [
            {"name": "HOME", "value": "/tmp"},
            # No GPU asked for, none seen: under the NVIDIA container runtime an image's
            # own NVIDIA_VISIBLE_DEVICES=all (CUDA images set it) would show every GPU of
            # the node, other tenants' too. With GPUs, the device plugin names them.
            *([{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}] if no_gpu else []),
            *({"name": name, "value": value} for name, value in server.env),
            *({"name": env.name, "value": env.value} for env in ms.spec.env),
        ],
        "resources": resources,
        "volumeMounts": mounts,
        "securityContext": CONTAINER_SECURITY,
        # Loading a large model takes minutes: liveness starts counting only after this.
        # A replica being replaced leaves the Service's Ready endpoints at once, so the
        # gateway sends it nothing new; the requests it is answering finish meanwhile.
        "lifecycle": {"preStop": {"sleep": {"seconds": settings.drain_seconds}}},
        "startupProbe": _probe("/health", server.port, 10, settings.startup_minutes * 6),
        "readinessProbe": _probe("/health", server.port, 5, 3),
        "livenessProbe": _probe("/health", server.port, 10, 3),
    }
    if ms.spec.env_from:
        # Kubernetes gives `env` precedence over `envFrom`: HOME and spec.env stay.
        container["envFrom"] = [source.as_pod_field() for source in ms.spec.env_from]
    return container


def placement(ms: ModelServe) -> Obj:
    """Where the pods may run: the operator's GPU toleration and GPU-type node selector,
    then the user's spec.placement added to them. The operator's entries stay whatever the
    user writes: a toleration equal to the GPU one is not repeated, and the node selector
    key nvidia.com/gpu.product is the operator's (spec.resources.gpuType; the CRD refuses
    it in spec.placement.nodeSelector, and here the operator's value wins)."""
    user = ms.spec.placement
    tolerations: list[Obj] = []
    node_selector: dict[str, str] = dict(user.node_selector)
    if ms.spec.resources.gpus:
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
        if ms.spec.resources.gpu_type:
            node_selector[GPU_PRODUCT_LABEL] = ms.spec.resources.gpu_type
    for toleration in user.tolerations:
        field = toleration.as_pod_field()
        if field not in tolerations:
            tolerations.append(field)
    fields: Obj = {}
    if tolerations:
        fields["tolerations"] = tolerations
    if node_selector:
        fields["nodeSelector"] = node_selector
    affinity = user.affinity.as_pod_field() if user.affinity is not None else None
    if affinity:
        fields["affinity"] = affinity
    if user.priority_class_name:
        fields["priorityClassName"] = user.priority_class_name
    return fields


def build_deployment(
    ms: ModelServe, settings: OperatorSettings, replicas: int | None = None
) -> Obj:
    """The Deployment of `ms` running `replicas` (the autoscaler's number with
    spec.autoscaling; None: spec.replicas)."""
    server = server_container(ms, settings)
    volumes: list[Obj] = [
        {"name": "model", "persistentVolumeClaim": {"claimName": cache_claim_name(ms)}}
        if ms.spec.model.cache.enabled
        else {"name": "model", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if ms.spec.runtime is Runtime.VLLM:
        # NCCL and PyTorch workers share tensors through /dev/shm.
        volumes.append(
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}}
        )
    pod_spec: Obj = {
        "initContainers": [_fetch_container(ms, settings)],
        "containers": [_server_container(ms, settings, server)],
        "volumes": volumes,
        "enableServiceLinks": False,
        # A model server has nothing to ask of the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": {
            # The images' users are root (llama.cpp, vLLM): the pod names its own.
            "runAsNonRoot": True,
            "runAsUser": settings.pod_user,
            "runAsGroup": settings.pod_user,
            "fsGroup": settings.pod_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # The drain, then time for the server to stop on SIGTERM.
        "terminationGracePeriodSeconds": settings.drain_seconds + 30,
    }
    if ms.spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": ref.name} for ref in ms.spec.image_pull_secrets]
    pod_spec.update(placement(ms))
    metadata = child_metadata(ms, ms.name)
    metadata["labels"] = {**metadata["labels"], GENERATION_LABEL: str(ms.generation)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": ms.spec.replicas if replicas is None else replicas,
            # As long as a model may take to fetch and start: a rollout is not Failed
            # before its pods could have been Ready.
            "progressDeadlineSeconds": progress_deadline(settings),
            "selector": {"matchLabels": selector(ms)},
            # GPUs are scarce: replace pods one by one rather than asking for a surge.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            },
            "template": {"metadata": {"labels": labels(ms)}, "spec": pod_spec},
        },
    }


def build_service(ms: ModelServe, settings: OperatorSettings) -> Obj:
    port = server_container(ms, settings).port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(ms, ms.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(ms),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def route_service(settings: OperatorSettings) -> Obj:
    """Where a per-server route leads: the gateway, a Kubernetes Service (by default) or a
    Traefik service of another provider (`name@provider`, e.g. the test bed's
    `modelserve-gateway@file`)."""
    if "@" in settings.route_service:
        return {"name": settings.route_service, "kind": "TraefikService"}
    return {
        "name": settings.route_service,
        "namespace": settings.route_service_namespace,
        "port": settings.route_service_port,
    }


def build_route(ms: ModelServe, settings: OperatorSettings) -> list[Obj]:
    """Traefik: `/{server-id}/` → the gateway, path kept.

    The gateway serves `/{server-id}/v1/...` itself: a request on this route passes the
    same authentication, limits, token budgets and usage accounting as one on `/v1`, and
    reaches a Ready endpoint of the server chosen by the gateway (one data path).
    """
    match = f"PathPrefix(`{route_prefix(ms)}/`)"
    if settings.route_host:
        match = f"Host(`{settings.route_host}`) && {match}"
    rule: Obj = {"kind": "Rule", "match": match, "services": [route_service(settings)]}
    middlewares = route_middlewares(settings)
    if middlewares:
        rule["middlewares"] = middlewares
    spec: Obj = {
        "entryPoints": [e.strip() for e in settings.route_entrypoints.split(",") if e.strip()],
        "routes": [rule],
    }
    if settings.route_tls:
        resolver = settings.route_tls_cert_resolver
        spec["tls"] = {"certResolver": resolver} if resolver else {}
    route = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRoute",
        "metadata": child_metadata(ms, ms.name),
        "spec": spec,
    }
    return [route]


def route_middlewares(settings: OperatorSettings) -> list[Obj]:
    """OPERATOR_ROUTE_MIDDLEWARES as an IngressRoute's middlewares, each with its namespace
    (a route in a server namespace would look for a bare name in its own)."""
    found: list[Obj] = []
    for entry in settings.route_middlewares.split(","):
        namespace, _, name = entry.strip().rpartition("/")
        if name:
            found.append({"name": name, "namespace": namespace or settings.route_service_namespace})
    return found


def controller_uid(obj: Obj | Any) -> str | None:
    """The uid of the ModelServe that controls `obj`, if one does."""
    for owner in obj["metadata"].get("ownerReferences") or []:
        if owner.get("kind") == "ModelServe" and owner.get("controller"):
            return str(owner.get("uid"))
    return None
