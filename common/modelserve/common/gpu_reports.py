"""What each node agent tells the platform about its node's GPUs: one Lease per node.

The node agent (`modelserve.nodeagent`) reads `nvidia-smi` every few seconds and keeps a
`coordination.k8s.io/v1` Lease in the platform namespace, named GPU_LEASE_PREFIX + the
node's name, labelled GPU_REPORT_LABEL=true, whose annotation GPU_REPORT_ANNOTATION is a
`GpuReport` as JSON:

    {"node": "gpu-a100-0",
     "gpus": [{"index": 0, "uuid": "GPU-…", "name": "NVIDIA A100-SXM4-80GB",
               "driver_version": "550.127.05", "memory_total_mb": 81920,
               "memory_used_mb": 4, "utilization_gpu": 0, "utilization_mem": 0,
               "temperature_gpu": 31, "power_draw_w": 61.2, "power_limit_w": 400.0,
               "fan_speed_pct": null, "unavailable": {"fan_speed_pct": "[N/A]"}}],
     "error": null,
     "power": {"profile": "quiet", "chosen": true, "target_w": 220, "enabled": true,
               "gpus": [{"index": 0, "uuid": "GPU-…", "result": "applied",
                         "limit_w": 220.0, "message": "…"}],
               "message": null}}

A field nvidia-smi does not give ("[N/A]", "[Not Supported]") is null, and what it
printed instead is in `unavailable`. `error` says why there are no figures at all (the
command failed). The Lease's renewTime and leaseDurationSeconds say how long the report
counts: the gateway shows only live ones, so a node whose agent stopped has no figures.

Pure functions: building and reading the Lease.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from modelserve.common.leases import build_report_lease, read_report_lease
from modelserve.common.modelserve import GROUP

GPU_REPORT_LABEL = f"{GROUP}/gpu-report"
GPU_REPORT_ANNOTATION = f"{GROUP}/gpu-report"
GPU_LEASE_PREFIX = "modelserve-gpu-"

# The seed's per-GPU fields, in its order.
FIGURES = (
    "name",
    "driver_version",
    "memory_total_mb",
    "memory_used_mb",
    "utilization_gpu",
    "utilization_mem",
    "temperature_gpu",
    "power_draw_w",
    "power_limit_w",
    "fan_speed_pct",
)


@dataclasses.dataclass(frozen=True)
class GpuFigures:
    """One GPU's figures as nvidia-smi gave them; None where it gave none (the reason in
    `unavailable`, by field)."""

    index: int
    uuid: str | None = None
    name: str | None = None
    driver_version: str | None = None
    memory_total_mb: float | None = None
    memory_used_mb: float | None = None
    utilization_gpu: float | None = None
    utilization_mem: float | None = None
    temperature_gpu: float | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    fan_speed_pct: float | None = None
    unavailable: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"index": self.index, "uuid": self.uuid}
        for field in FIGURES:
            wire[field] = _number(getattr(self, field))
        wire["unavailable"] = dict(sorted(self.unavailable.items()))
        return wire

    @classmethod
    def from_wire(cls, found: Mapping[str, Any]) -> GpuFigures:
        values: dict[str, Any] = {}
        for field in FIGURES:
            value = found.get(field)
            if field in ("name", "driver_version"):
                values[field] = None if value is None else str(value)
            else:
                values[field] = None if value is None else float(value)
        unavailable = found.get("unavailable") or {}
        return cls(
            index=int(found["index"]),
            uuid=None if found.get("uuid") is None else str(found["uuid"]),
            unavailable={str(k): str(v) for k, v in unavailable.items()},
            **values,
        )


def _number(value: object) -> object:
    """Whole numbers as integers (24576, not 24576.0), as the seed shows them."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


@dataclasses.dataclass(frozen=True)
class PowerResult:
    """What the agent did about one GPU's power limit."""

    index: int
    uuid: str | None
    # applied, unchanged (already at the limit), clamped (applied, at the GPU's bound),
    # not_permitted, not_supported, failed, disabled (NODEAGENT_APPLY_POWER_LIMITS off).
    result: str
    limit_w: float | None = None
    message: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "result": self.result,
            "limit_w": _number(self.limit_w),
            "message": self.message,
        }

    @classmethod
    def from_wire(cls, found: Mapping[str, Any]) -> PowerResult:
        limit = found.get("limit_w")
        return cls(
            index=int(found["index"]),
            uuid=None if found.get("uuid") is None else str(found["uuid"]),
            result=str(found["result"]),
            limit_w=None if limit is None else float(limit),
            message=None if found.get("message") is None else str(found["message"]),
        )


@dataclasses.dataclass(frozen=True)
class PowerReport:
    """The profile the agent read and what it did with each GPU's limit; `message` when
    it did nothing at all (why)."""

    profile: str | None
    chosen: bool
    target_w: float | None
    enabled: bool
    gpus: tuple[PowerResult, ...] = ()
    message: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "chosen": self.chosen,
            "target_w": _number(self.target_w),
            "enabled": self.enabled,
            "gpus": [gpu.to_wire() for gpu in self.gpus],
            "message": self.message,
        }

    @classmethod
    def from_wire(cls, found: Mapping[str, Any]) -> PowerReport:
        target = found.get("target_w")
        return cls(
            profile=None if found.get("profile") is None else str(found["profile"]),
            chosen=bool(found.get("chosen")),
            target_w=None if target is None else float(target),
            enabled=bool(found.get("enabled")),
            gpus=tuple(PowerResult.from_wire(gpu) for gpu in found.get("gpus") or []),
            message=None if found.get("message") is None else str(found["message"]),
        )


@dataclasses.dataclass(frozen=True)
class GpuReport:
    node: str
    renewed: float  # seconds since the epoch
    duration: float  # seconds the report counts after `renewed`
    gpus: tuple[GpuFigures, ...] = ()
    error: str | None = None
    power: PowerReport | None = None

    def live(self, now: float) -> bool:
        return now < self.renewed + self.duration


def gpu_lease_name(node: str) -> str:
    return f"{GPU_LEASE_PREFIX}{node}"[:253]


def build_gpu_lease(report: GpuReport, namespace: str) -> dict[str, Any]:
    """The Lease that carries `report` (for a create or a patch)."""
    payload = {
        "node": report.node,
        "gpus": [gpu.to_wire() for gpu in report.gpus],
        "error": report.error,
        "power": report.power.to_wire() if report.power is not None else None,
    }
    return build_report_lease(
        name=gpu_lease_name(report.node),
        namespace=namespace,
        label=GPU_REPORT_LABEL,
        annotation=GPU_REPORT_ANNOTATION,
        holder=report.node,
        payload=payload,
        duration=report.duration,
        renewed=report.renewed,
    )


def gpu_report_from_lease(body: Mapping[str, Any]) -> GpuReport | None:
    """The report a Lease carries; None for a Lease that is not one (or unreadable), or
    that speaks for another node than its name and holder say: one Lease per node, so
    that a report cannot stand in for another node's."""
    lease = read_report_lease(body, GPU_REPORT_LABEL, GPU_REPORT_ANNOTATION)
    if lease is None:
        return None
    payload = lease.payload
    node = str(payload.get("node") or lease.holder)
    if lease.holder != node or lease.name != gpu_lease_name(node):
        return None
    try:
        power = payload.get("power")
        return GpuReport(
            node=node,
            renewed=lease.renewed,
            duration=lease.duration,
            gpus=tuple(GpuFigures.from_wire(gpu) for gpu in payload.get("gpus") or []),
            error=None if payload.get("error") is None else str(payload["error"]),
            power=PowerReport.from_wire(power) if isinstance(power, dict) else None,
        )
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
