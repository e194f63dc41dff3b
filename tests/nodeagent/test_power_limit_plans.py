"""What the node agent sets on each GPU for a profile (pure), and how it reads `-pl`'s
refusals."""

from __future__ import annotations

from typing import Any

from modelserve.common.gpu_reports import GpuFigures
from modelserve.nodeagent.power import Plan, outcome, plan_limits
from modelserve.nodeagent.smi import Limits

GPUS = (
    GpuFigures(index=0, uuid="GPU-a", power_limit_w=400.0),
    GpuFigures(index=1, uuid="GPU-b", power_limit_w=220.0),
    GpuFigures(index=2, uuid="GPU-c", power_limit_w=72.0),
    GpuFigures(index=3, uuid="GPU-d", power_limit_w=None),
)
BOUNDS = {0: Limits(100.0, 400.0), 1: Limits(100.0, 400.0), 2: Limits(40.0, 72.0)}


def test_each_gpu_gets_the_profile_s_limit_within_its_bounds() -> None:
    plans = {plan.index: plan for plan in plan_limits(220.0, GPUS, BOUNDS)}
    assert (plans[0].limit_w, plans[0].result) == (220.0, "applied")
    # Already there: nvidia-smi is not run.
    assert (plans[1].limit_w, plans[1].result) == (None, "unchanged")
    # An L4 allows at most 72 W: the profile's 220 W becomes 72 W, which it already has.
    assert (plans[2].limit_w, plans[2].result) == (None, "unchanged")
    assert "outside this GPU's 40-72 W" in plans[2].message
    # No limit or no bounds: nothing to set.
    assert (plans[3].limit_w, plans[3].result) == (None, "not_supported")


def test_a_limit_below_a_gpu_s_minimum_is_raised_to_it() -> None:
    (plan,) = plan_limits(50.0, GPUS[:1], BOUNDS)
    assert (plan.limit_w, plan.result) == (100.0, "clamped")
    assert plan.message == "50 W is outside this GPU's 100-400 W; 100 W instead"


def test_refusals_are_classified() -> None:
    plan = Plan(0, "GPU-a", 220.0, "applied", "220 W")
    done = outcome(
        plan, 0, "Power limit for GPU 00000000:4F:00.0 was set to 220.00 W from 400.00 W."
    )
    assert (done.result, done.limit_w) == ("applied", 220.0)
    cases = {
        "Insufficient Permissions for GPU 00000000:4F:00.0": "not_permitted",
        "The current user does not have permission to change power limit": "not_permitted",
        "Changing power management limit is not supported for GPU: 00000000:4F:00.0.": (
            "not_supported"
        ),
        "Unknown Error": "failed",
    }
    for message, result in cases.items():
        refused = outcome(plan, 4, message)
        assert (refused.result, refused.limit_w) == (result, None), message
        assert refused.message == f"nvidia-smi -pl exited 4: {message}"


def test_a_definite_refusal_is_not_asked_again_a_timeout_is() -> None:
    """`-pl` answered "not permitted" gives the same answer next time: asked once for a
    target. A timeout (exit 124) or an unknown failure may pass next time: asked again."""
    from kubernetes import client as k8s

    from modelserve.common.power_profiles import (
        DEFAULT_PROFILES,
        build_configmap_data,
        current_profile,
    )
    from modelserve.nodeagent.agent import NodeAgent
    from modelserve.nodeagent.settings import NodeAgentSettings

    asked: list[list[str]] = []
    answers = {"0": (4, "Insufficient Permissions"), "1": (124, "timed out")}

    def run(command: list[str], timeout: float) -> tuple[int, str]:
        asked.append(command)
        if "-pl" not in command:
            return 0, "0, 100.00, 400.00\n1, 100.00, 400.00\n"
        return answers[command[command.index("-i") + 1]]

    class Agent(NodeAgent):
        def read_profile(self) -> Any:
            return current_profile(build_configmap_data("quiet", DEFAULT_PROFILES))

    settings = NodeAgentSettings(node_name="gpu-0", apply_power_limits=True)
    agent = Agent(settings, k8s.ApiClient(), run=run)
    gpus = (
        GpuFigures(index=0, uuid="GPU-a", power_limit_w=400.0),
        GpuFigures(index=1, uuid="GPU-b", power_limit_w=400.0),
    )
    for _ in range(3):
        report = agent.apply_power(gpus)
        assert [r.result for r in report.gpus] == ["not_permitted", "failed"]
    set_calls = [c[c.index("-i") + 1] for c in asked if "-pl" in c]
    assert set_calls == ["0", "1", "1", "1"]
