"""A ModelServe's status, computed from what its children report (pure functions).

The handlers feed in the Deployment and the pods as the cluster last showed them;
nothing here guesses: every phase and message comes from a field of a child.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelserve.common.modelserve import FETCH_CONTAINER, ModelServe, Runtime
from modelserve.common.timestamps import epoch_seconds, rfc3339
from modelserve.operator.autoscaling.decisions import AutoscaleView
from modelserve.operator.builders import (
    GENERATION_LABEL,
    endpoint,
    route_prefix,
    selector_string,
)
from modelserve.operator.multinode import GROUP_INDEX_LABEL, WORKER_INDEX_LABEL, is_multinode
from modelserve.operator.settings import OperatorSettings

PENDING, DEPLOYING, READY, DEGRADED, FAILED = "Pending", "Deploying", "Ready", "Degraded", "Failed"
SLEEPING = "Sleeping"
# The autoscaler's status fields; the status write is a merge patch, where None deletes.
AUTOSCALER_FIELDS = ("drain", "podDrain", "activatedAt", "lastRequestTime")
# Status fields of a server's workload and its models (none for an external server).
WORKLOAD_FIELDS = ("desiredReplicas", "model", "rollout")
# Container states that will not fix themselves without a change of spec or image.
FAILING_REASONS = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}


@dataclass(frozen=True)
class DeploymentView:
    generation: int
    observed_generation: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    progress_deadline_exceeded: bool
    model_uri: str | None = None  # the model its pod template fetches (MODEL_URI)
    # Not rolled out whatever its counts say: a LeaderWorkerSet still replacing groups
    # after a change of its templates, or a workload whose template still fetches the
    # model a started rollout moves away from (`compute_status`).
    update_in_progress: bool = False
    # The ModelServe generation it was last applied for (GENERATION_LABEL); None
    # for one applied by an operator that did not write it.
    applied_for: int | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DeploymentView:
        """A Deployment's view, or a LeaderWorkerSet's (whose replicas are groups)."""
        if body.get("kind") == "LeaderWorkerSet":
            return cls._from_group_set(body)
        status = body.get("status") or {}
        conditions = status.get("conditions") or []
        return cls(
            generation=body["metadata"].get("generation", 0),
            observed_generation=status.get("observedGeneration", 0),
            replicas=status.get("replicas", 0),
            ready_replicas=status.get("readyReplicas", 0),
            updated_replicas=status.get("updatedReplicas", 0),
            progress_deadline_exceeded=any(
                c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
                for c in conditions
            ),
            model_uri=_model_uri(((body.get("spec") or {}).get("template") or {}).get("spec")),
            applied_for=_applied_for(body),
        )

    @classmethod
    def _from_group_set(cls, body: Mapping[str, Any]) -> DeploymentView:
        """LeaderWorkerSet counts groups: `readyReplicas` those whose leader is Ready and
        whose workers' pods all exist (`compute_status` asks more, with `ready_groups`),
        `updatedReplicas` those on the current templates. It publishes no
        observedGeneration; its UpdateInProgress condition says that groups still run an
        older template. No progress deadline either."""
        status = body.get("status") or {}
        generation = body["metadata"].get("generation", 0)
        template = ((body.get("spec") or {}).get("leaderWorkerTemplate") or {}).get(
            "leaderTemplate"
        ) or {}
        return cls(
            generation=generation,
            observed_generation=generation,
            replicas=status.get("replicas", 0),
            ready_replicas=status.get("readyReplicas", 0),
            updated_replicas=status.get("updatedReplicas", 0),
            progress_deadline_exceeded=False,
            model_uri=_model_uri(template.get("spec")),
            update_in_progress=any(
                c.get("type") == "UpdateInProgress" and c.get("status") == "True"
                for c in status.get("conditions") or []
            ),
            applied_for=_applied_for(body),
        )


@dataclass(frozen=True)
class PodView:
    name: str
    unschedulable: str | None  # the scheduler's message, when it could not place the pod
    fetch_failure: str | None  # why the init step that fetches the model failed
    failure: str | None  # a server container stuck in a failing state
    deleting: bool
    ready: bool = False  # its Ready condition is True
    created: float = 0.0  # its creation time, seconds since the epoch
    model_uri: str | None = None  # the model its fetch step copies (MODEL_URI)
    # A LeaderWorkerSet's pod: the index of its group, and its own index in the group
    # (the leader's is 0); None for any other pod.
    group: int | None = None
    worker: int | None = None

    @property
    def leader_of(self) -> int | None:
        """The group this pod leads, if it is a LeaderWorkerSet's leader."""
        return self.group if self.worker == 0 else None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodView:
        status = body.get("status") or {}
        labels = body["metadata"].get("labels") or {}
        unschedulable = next(
            (
                c.get("message") or c.get("reason")
                for c in status.get("conditions") or []
                if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
            ),
            None,
        )
        return cls(
            name=body["metadata"]["name"],
            unschedulable=unschedulable,
            fetch_failure=_failure(status.get("initContainerStatuses") or [], init=True),
            failure=_failure(status.get("containerStatuses") or [], init=False),
            deleting=bool(body["metadata"].get("deletionTimestamp")),
            ready=any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            ),
            created=epoch_seconds(body["metadata"].get("creationTimestamp")) or 0.0,
            model_uri=_model_uri(body.get("spec")),
            group=_index(labels, GROUP_INDEX_LABEL),
            worker=_index(labels, WORKER_INDEX_LABEL),
        )


def _index(labels: Mapping[str, str], label: str) -> int | None:
    """LeaderWorkerSet labels each pod with its group's index and its own index in the
    group."""
    value = labels.get(label, "")
    return int(value) if value.isdigit() else None


def ready_groups(pods: Sequence[PodView], size: int) -> int:
    """The groups of `size` pods whose every pod is there and Ready. LeaderWorkerSet's
    own count (readyReplicas) asks only that the leader be Ready and the workers exist:
    a group whose worker is not Ready does not serve (vLLM needs every GPU of it)."""
    members: dict[int, list[PodView]] = {}
    for pod in pods:
        if pod.group is not None and not pod.deleting:
            members.setdefault(pod.group, []).append(pod)
    return sum(
        1 for group in members.values() if len(group) == size and all(p.ready for p in group)
    )


def _applied_for(body: Mapping[str, Any]) -> int | None:
    value = (body["metadata"].get("labels") or {}).get(GENERATION_LABEL, "")
    return int(value) if value.isdigit() else None


def _model_uri(spec: Mapping[str, Any] | None) -> str | None:
    for container in (spec or {}).get("initContainers") or []:
        if container.get("name") == FETCH_CONTAINER:
            for env in container.get("env") or []:
                if env.get("name") == "MODEL_URI":
                    return str(env.get("value") or "")
    return None


def _failure(statuses: Iterable[Mapping[str, Any]], *, init: bool) -> str | None:
    for container in statuses:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        if init and waiting.get("reason") == "CrashLoopBackOff":
            # Between two tries the reason is the back-off; why it failed is the last try's.
            terminated = (container.get("lastState") or {}).get("terminated") or {}
        if init and terminated and terminated.get("exitCode", 0) != 0:
            reason = terminated.get("message") or terminated.get("reason") or "failed"
            return f"{container['name']} exited with code {terminated['exitCode']}: {reason}"
        if waiting.get("reason") in FAILING_REASONS:
            return f"{container['name']}: {waiting['reason']}: {waiting.get('message', '')}".strip()
    return None


@dataclass(frozen=True)
class Refusal:
    """Why the operator runs nothing for a ModelServe (its children are deleted)."""

    condition: str  # the condition that says it: ModelAvailable, or Ready for the spec
    reason: str
    message: str


@dataclass(frozen=True)
class ProbeResult:
    """What the last probe of an `external` server found."""

    ok: bool
    message: str


def _condition(
    kind: str, ok: bool, reason: str, message: str, generation: int, previous: Sequence[Any]
) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == kind), None)
    unchanged = before is not None and before.get("status") == status
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": before["lastTransitionTime"] if unchanged and before else now,
    }


def compute_status(
    ms: ModelServe,
    settings: OperatorSettings,
    *,
    deployment: DeploymentView | None,
    pods: Sequence[PodView],
    probe: ProbeResult | None = None,
    previous: Mapping[str, Any] | None = None,
    refusal: Refusal | None = None,
    autoscale: AutoscaleView | None = None,
    rollout: Mapping[str, Any] | None = None,
    serving_uri: str | None = None,
    missing: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole `status` of `ms`, given what its children report right now (and, with
    spec.autoscaling, what the autoscaler decided; `rollout`: status.model and
    status.rollout as the rollout decided them, `serving_uri` the model the Deployment
    runs: pods of another model are on their way out, their failures are not the server's;
    `missing`: the children other than the workload and the store Secret that the cluster
    does not show yet, such as "Service ms-a": a server is not Ready without its route)."""
    previous_conditions = (previous or {}).get("conditions") or []
    if serving_uri is not None:
        pods = [pod for pod in pods if pod.model_uri in (None, serving_uri)]
        if deployment is not None and deployment.model_uri not in (None, serving_uri):
            # A rollout has started and the workload is not yet applied with its model:
            # not rolled out, though every pod of the old model may be Ready.
            deployment = dataclasses.replace(deployment, update_in_progress=True)
    desired = autoscale.desired if autoscale else ms.spec.replicas
    if deployment is not None and is_multinode(ms):
        ready = min(deployment.ready_replicas, ready_groups(pods, ms.spec.group_size))
        deployment = dataclasses.replace(deployment, ready_replicas=ready)
    if refusal is not None:
        phase, message = FAILED, refusal.message
        conditions: Conditions = [(refusal.condition, False, refusal.reason, refusal.message)]
        if refusal.condition != "Ready":
            conditions.append(("Ready", False, refusal.reason, refusal.message))
        ready_replicas = 0
    elif ms.spec.runtime is Runtime.EXTERNAL:
        phase, message, conditions = _external(ms, probe)
        ready_replicas = 1 if phase == READY else 0
    else:
        kind = "LeaderWorkerSet" if is_multinode(ms) else "Deployment"
        phase, message, conditions = _deployed(desired, deployment, pods, autoscale, kind, missing)
        ready_replicas = deployment.ready_replicas if deployment else 0
    # The generation this status speaks for: the spec's, unless the workload it was
    # computed from was last applied for an older one (the watch has not shown the
    # change yet, or applying it failed).
    observed = ms.generation
    if refusal is None and deployment is not None and deployment.applied_for is not None:
        observed = min(observed, deployment.applied_for)
    status: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "replicas": deployment.replicas if deployment and not refusal else 0,
        "readyReplicas": ready_replicas,
        "selector": selector_string(ms),
        "endpoint": endpoint(ms, settings),
        "serverId": ms.server_id,
        "route": f"{route_prefix(ms)}/" if ms.spec.runtime is not Runtime.EXTERNAL else "",
        "observedGeneration": observed,
        "conditions": [
            _condition(kind, ok, reason, text, observed, previous_conditions)
            for kind, ok, reason, text in conditions
        ],
    }
    if ms.spec.runtime is not Runtime.EXTERNAL:
        status["desiredReplicas"] = 0 if refusal else desired
    else:
        # A server turned external keeps no field of the workload it had.
        status.update({field: None for field in WORKLOAD_FIELDS if field in (previous or {})})
    if rollout is not None:
        status.update(rollout)
    if autoscale is not None:
        status.update(_autoscaled(autoscale, previous or {}))
    else:
        # spec.autoscaling removed (perhaps during a drain): its fields go, a drain above
        # all, which would keep the gateways holding every request for the model.
        status.update({field: None for field in AUTOSCALER_FIELDS if field in (previous or {})})
    return status


def _autoscaled(view: AutoscaleView, previous: Mapping[str, Any]) -> dict[str, Any]:
    """The autoscaler's fields; `drain` and `podDrain` as None (deleted by the merge
    patch) once they end."""
    fields: dict[str, Any] = {}
    if view.last_request:
        fields["lastRequestTime"] = rfc3339(view.last_request)
    if view.activated_at:
        fields["activatedAt"] = rfc3339(view.activated_at)
    if view.drain is not None:
        fields["drain"] = view.drain.to_status()
    elif previous.get("drain"):
        fields["drain"] = None
    if view.pod_drain is not None:
        fields["podDrain"] = view.pod_drain.to_status()
    elif previous.get("podDrain"):
        fields["podDrain"] = None
    return fields


Conditions = list[tuple[str, bool, str, str]]


def _external(ms: ModelServe, probe: ProbeResult | None) -> tuple[str, str, Conditions]:
    if probe is None:
        message = "waiting for the first probe"
        return PENDING, message, [("Ready", False, "NotProbed", message)]
    if probe.ok:
        return READY, probe.message, [("Ready", True, "ProbeSucceeded", probe.message)]
    return DEGRADED, probe.message, [("Ready", False, "ProbeFailed", probe.message)]


def _deployed(
    desired: int,
    deployment: DeploymentView | None,
    pods: Sequence[PodView],
    autoscale: AutoscaleView | None,
    kind: str,
    missing: Sequence[str] = (),
) -> tuple[str, str, Conditions]:
    if autoscale is not None and desired == 0 and autoscale.drain is None:
        message = autoscale.sleep_message or "asleep: 0 replicas until a request comes"
        return SLEEPING, message, [("Ready", False, SLEEPING, message)]
    if deployment is None:
        message = f"creating the {kind}"
        return PENDING, message, [("Ready", False, "Creating", message)]
    live = [pod for pod in pods if not pod.deleting]
    ready = deployment.ready_replicas
    unschedulable = [pod.unschedulable for pod in live if pod.unschedulable]
    fetch_failures = [pod.fetch_failure for pod in live if pod.fetch_failure]
    failures = [pod.failure for pod in live if pod.failure]
    rolled_out = (
        deployment.observed_generation >= deployment.generation
        and deployment.updated_replicas >= desired
        and not deployment.update_in_progress
    )
    counts = f"{ready}/{desired} replicas ready"
    blocked = autoscale.blocked if autoscale else None
    if blocked is not None:
        # Waiting for GPUs that only an eviction frees: the gateway reads the reason.
        scheduled = ("Scheduled", False, *blocked)
    else:
        scheduled = (
            "Scheduled",
            not unschedulable,
            "Unschedulable" if unschedulable else "Scheduled",
            unschedulable[0] if unschedulable else "",
        )
    conditions: Conditions = [
        scheduled,
        (
            "ModelAvailable",
            not fetch_failures,
            "FetchFailed" if fetch_failures else "Fetched",
            fetch_failures[0] if fetch_failures else "",
        ),
    ]
    problems = fetch_failures or failures
    if desired == 0:
        phase, message = PENDING, "scaled to zero replicas"
    elif ready >= desired and rolled_out and missing:
        # Its replicas serve, and nothing routes to them yet (an operator that restarted
        # half-way through, or someone deleted the Service and it is being made again).
        phase, message = DEPLOYING, f"{counts}: creating the {', '.join(missing)}"
    elif ready >= desired and rolled_out:
        phase, message = READY, counts
    elif deployment.progress_deadline_exceeded or (problems and not ready):
        detail = (problems or ["the rollout missed its progress deadline"])[0]
        phase, message = FAILED, f"{counts}: {detail}"
    elif blocked is not None and not ready:
        phase, message = PENDING, f"{counts}: {blocked[1]}"
    elif unschedulable and not ready:
        phase, message = PENDING, f"{counts}: no node can take the pods: {unschedulable[0]}"
    elif unschedulable or problems:
        # Serving, but some replicas cannot run: that needs a person, not patience.
        phase, message = DEGRADED, f"{counts}: {(unschedulable or problems)[0]}"
    else:
        phase, message = DEPLOYING, f"{counts}: {'rolling out' if ready else 'starting'}"
    if autoscale is not None and autoscale.drain is not None:
        message = f"{message}; going to sleep: {autoscale.drain.message}"
    elif autoscale is not None and autoscale.note:
        message = f"{message}; {autoscale.note}"
    conditions.append(("Ready", phase == READY, phase, message))
    return phase, message, conditions
