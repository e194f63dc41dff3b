"""The power profile as GPU power limits: what to set on each GPU (pure), and what came
of `nvidia-smi -pl` (its exit status and words, classified).

The profile's limit is clamped to each GPU's own bounds (`power.min_limit`,
`power.max_limit`): a 220 W profile on a GPU that allows 100-150 W sets 150 W and says
so (`clamped`). A GPU already at the target is left alone (`unchanged`): the agent
asks again every interval, and nvidia-smi is only run when something would change.
"""

from __future__ import annotations

import dataclasses

from modelserve.common.gpu_reports import GpuFigures, PowerResult
from modelserve.nodeagent.smi import Limits

# Watts within which a GPU's limit counts as the target (nvidia-smi rounds to 0.01 W).
TOLERANCE_W = 0.5


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do with one GPU: set `limit_w` (None: nothing to set, see `result`)."""

    index: int
    uuid: str | None
    limit_w: float | None
    result: str
    message: str


def plan_limits(
    target_w: float, gpus: tuple[GpuFigures, ...], limits: dict[int, Limits]
) -> list[Plan]:
    plans = []
    for gpu in gpus:
        bounds = limits.get(gpu.index, Limits(None, None))
        if gpu.power_limit_w is None or bounds.minimum is None or bounds.maximum is None:
            plans.append(
                Plan(
                    gpu.index,
                    gpu.uuid,
                    None,
                    "not_supported",
                    "nvidia-smi gives no power limit (or no bounds) for this GPU",
                )
            )
            continue
        limit = min(max(target_w, bounds.minimum), bounds.maximum)
        clamped = limit != target_w
        why = (
            f"{target_w:g} W is outside this GPU's {bounds.minimum:g}-{bounds.maximum:g} W; "
            f"{limit:g} W instead"
            if clamped
            else f"{limit:g} W"
        )
        if abs(gpu.power_limit_w - limit) <= TOLERANCE_W:
            plans.append(Plan(gpu.index, gpu.uuid, None, "unchanged", f"already at {why}"))
        else:
            plans.append(Plan(gpu.index, gpu.uuid, limit, "clamped" if clamped else "applied", why))
    return plans


def outcome(plan: Plan, returncode: int, output: str) -> PowerResult:
    """The result of running `nvidia-smi -pl` for `plan` (its exit status and output)."""
    words = " ".join(output.split())[:300]
    if returncode == 0:
        return PowerResult(plan.index, plan.uuid, plan.result, plan.limit_w, plan.message)
    lowered = words.lower()
    if "permission" in lowered or "not permitted" in lowered or "root" in lowered:
        result = "not_permitted"
    elif "not supported" in lowered:
        result = "not_supported"
    else:
        result = "failed"
    return PowerResult(
        plan.index, plan.uuid, result, None, f"nvidia-smi -pl exited {returncode}: {words}"
    )


def unchanged(plan: Plan, current: GpuFigures) -> PowerResult:
    """A plan with nothing to run, as a result (the GPU's limit as it is)."""
    return PowerResult(plan.index, plan.uuid, plan.result, current.power_limit_w, plan.message)
