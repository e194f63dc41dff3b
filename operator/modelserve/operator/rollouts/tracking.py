"""Set-active rollouts, the operator's side: one look at a server per status computation
(`decisions.step`), the Deployment kept on the model the status says it runs, and an
Event and a metric for each rollout that starts or ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from modelserve.common.modelserve import ModelServe
from modelserve.operator.autoscaling.decisions import AutoscaleView
from modelserve.operator.cluster import Cluster, ClusterError
from modelserve.operator.rollouts import decisions
from modelserve.operator.rollouts.metrics import RolloutMetrics
from modelserve.operator.status import DeploymentView, PodView

logger = logging.getLogger(__name__)


def annotations_of(body: Any) -> dict[str, str]:
    return dict(body["metadata"].get("annotations") or {})


class RolloutTracker:
    def __init__(self, cluster: Cluster, metrics: RolloutMetrics, deadline: float) -> None:
        self.cluster = cluster
        self.metrics = metrics
        self.deadline = deadline

    @staticmethod
    def serving(ms: ModelServe, parent: Any, status: Mapping[str, Any]) -> ModelServe:
        """`ms` with the model its Deployment runs by `status` (`decisions.serving_uri`)."""
        wanted, rollout_id = decisions.requested(ms, annotations_of(parent))
        return decisions.with_model_uri(ms, decisions.serving_uri(wanted, rollout_id, status))

    def look(
        self,
        ms: ModelServe,
        parent: Any,
        status: Mapping[str, Any],
        deployment: DeploymentView | None,
        pods: list[PodView],
        autoscale: AutoscaleView | None,
    ) -> decisions.Step:
        """One look at the server: its rollout fields as they should be now."""
        wanted, rollout_id = decisions.requested(ms, annotations_of(parent))
        observed = decisions.Observed(
            desired=autoscale.desired if autoscale else ms.spec.replicas,
            deployment=deployment,
            pods=pods,
            now=time.time(),
            woken_at=autoscale.activated_at if autoscale and autoscale.activated_at else 0.0,
        )
        return decisions.step(wanted, rollout_id, status, observed, deadline=self.deadline)

    async def announce(self, body: dict[str, Any], step: decisions.Step) -> None:
        """An Event and a metric for a rollout that started or ended."""
        rollout = step.rollout
        if rollout is None or not (
            step.started or step.completed or step.rolled_back or step.superseded
        ):
            return
        meta = body["metadata"]
        event = ("Normal", "RollingOut", f"rolling out {rollout.target} in place of "
                 f"{rollout.source}")  # fmt: skip
        if step.completed:
            event = ("Normal", "RolledOut", f"every replica runs {rollout.target}")
            self.metrics.rollouts.labels("complete").inc()
        if step.superseded:
            event = ("Normal", "RolloutSuperseded", rollout.message)
            self.metrics.rollouts.labels("superseded").inc()
        if step.rolled_back:
            event = (
                "Warning",
                "RolledBack",
                f"rolled back from {rollout.target} to {rollout.source}: {rollout.reason}: "
                f"{rollout.message}",
            )
            self.metrics.rollouts.labels("rolled_back").inc()
            self.metrics.rollbacks.labels(meta["namespace"], meta["name"], rollout.reason).inc()
        logger.info("%s/%s: %s", meta["namespace"], meta["name"], event[2])
        try:
            await self.cluster.post_event(body, *event)
        except ClusterError as error:  # the status says it; the Event is a courtesy
            if not error.gone:
                logger.warning("no Event for %s/%s: %s", meta["namespace"], meta["name"], error)
