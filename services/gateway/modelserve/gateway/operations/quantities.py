"""Resource requests of pods, summed per node as the scheduler counts them (pure).

A pod's request of a resource is the larger of what its containers run with at once (its
app containers and its sidecars, the init containers with `restartPolicy: Always`) and
what any one regular init container needs while it runs (with the sidecars started
before it), plus the pod's overhead: the rule `kubectl describe node` applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from modelserve.common.modelserve import GPU_RESOURCE

GPU = GPU_RESOURCE
# The resources /system reports, in its units: cores, bytes, devices.
RESOURCES = ("cpu", "memory", GPU)
# Pods that hold nothing any more.
TERMINATED_PHASES = frozenset({"Succeeded", "Failed"})


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity ("100m", "1Gi", "2") as a number; ValueError if it is none."""
    parsed: Decimal = parse_quantity(value)
    return parsed


def amounts(resources: Mapping[str, Any] | None) -> dict[str, Decimal]:
    """The RESOURCES of a requests, capacity or allocatable map, as numbers (0 if absent)."""
    given = resources or {}
    return {name: quantity(given[name]) if name in given else Decimal(0) for name in RESOURCES}


def _add(total: dict[str, Decimal], more: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {name: total[name] + more[name] for name in RESOURCES}


def _requests(container: Mapping[str, Any]) -> dict[str, Decimal]:
    """A container's requests; a resource with a limit only is requested at its limit (the
    API server's default, so a pod as written counts as the pod as stored)."""
    resources = container.get("resources") or {}
    return amounts({**(resources.get("limits") or {}), **(resources.get("requests") or {})})


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """What the scheduler holds for `pod` on its node (see the module's docstring)."""
    spec = pod.get("spec") or {}
    zero = dict.fromkeys(RESOURCES, Decimal(0))
    running = zero
    for container in spec.get("containers") or []:
        running = _add(running, _requests(container))
    sidecars, peak = zero, zero
    for init in spec.get("initContainers") or []:
        if init.get("restartPolicy") == "Always":
            sidecars = _add(sidecars, _requests(init))
            peak = {name: max(peak[name], sidecars[name]) for name in RESOURCES}
        else:
            during = _add(sidecars, _requests(init))
            peak = {name: max(peak[name], during[name]) for name in RESOURCES}
    steady = _add(running, sidecars)
    total = {name: max(steady[name], peak[name]) for name in RESOURCES}
    return _add(total, amounts(spec.get("overhead")))


def holds_resources(pod: Mapping[str, Any]) -> bool:
    """Bound to a node and not terminated: counted against that node."""
    phase = (pod.get("status") or {}).get("phase")
    return bool((pod.get("spec") or {}).get("nodeName")) and phase not in TERMINATED_PHASES


def requests_per_node(
    pods: Iterable[Mapping[str, Any]],
) -> dict[str, tuple[dict[str, Decimal], int]]:
    """Node name → (the summed requests of its non-terminated pods, how many pods)."""
    found: dict[str, tuple[dict[str, Decimal], int]] = {}
    for pod in pods:
        if not holds_resources(pod):
            continue
        node = pod["spec"]["nodeName"]
        total, count = found.get(node, (dict.fromkeys(RESOURCES, Decimal(0)), 0))
        found[node] = (_add(total, pod_requests(pod)), count + 1)
    return found


def as_units(values: Mapping[str, Decimal]) -> dict[str, float | int]:
    """cpu in cores (a float), memory in bytes and GPUs as counts (integers)."""
    return {name: float(values[name]) if name == "cpu" else int(values[name]) for name in RESOURCES}
