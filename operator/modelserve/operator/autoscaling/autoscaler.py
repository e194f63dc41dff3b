"""The autoscaler: carries out the decisions of `decisions` for every ModelServe with
spec.autoscaling (runtimes vllm and llamacpp).

Its state per ModelServe lives here, in memory, first read from the status (an operator
that restarts goes on where the last one stopped); the status writer shows it
(`view`). It runs a pass whenever a load report, a ModelServe, a Deployment or a pod
changes, and at least every `autoscale_interval` seconds (idle timeouts, windows, drain
deadlines). It writes Deployments' replicas itself, at once (activation latency counts),
under the same per-ModelServe lock as the reconcile path, which builds the Deployment
with the same number (`replicas`).

Scaling down (N to N-1, N-1 >= 1) is fenced per replica: the operator picks the Ready
pods with the fewest requests in flight and names them in status.podDrain; the gateways
send them nothing new and say so in their reports; once none has a request on them (or
after OPERATOR_REPLICA_DRAIN_SECONDS), they get the lowest pod-deletion-cost, so the
ReplicaSet removes exactly those, and only then is the Deployment lowered. Their preStop
sleep (OPERATOR_DRAIN_SECONDS) still covers what reaches them in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import kopf
from pydantic import ValidationError

from modelserve.common.load_reports import LoadReport, ServerLoad, summed
from modelserve.common.modelserve import GPU_RESOURCE, Autoscaling, ModelServe, Runtime
from modelserve.common.timestamps import epoch_seconds, rfc3339
from modelserve.operator.autoscaling.decisions import (
    EVICTED,
    IDLE,
    WAITING_FOR_EVICTION,
    AutoscaleView,
    Candidate,
    Drain,
    DrainOutcome,
    Key,
    LoadWindow,
    PodDrain,
    PodDrainOutcome,
    PodLoad,
    drain_outcome,
    gpu_type_name,
    idle_seconds,
    initial_replicas,
    listed,
    named,
    plan_eviction,
    pod_drain_outcome,
    pod_drain_released,
    pods_to_drain,
    scaled_replicas,
    should_sleep,
    shown,
)
from modelserve.operator.autoscaling.metrics import AutoscalerMetrics
from modelserve.operator.autoscaling.reports import LoadReports
from modelserve.operator.children import build_workload
from modelserve.operator.cluster import ClusterError
from modelserve.operator.multinode import is_multinode, leaders_to_drain
from modelserve.operator.refusals import spec_refusal
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.status import PodView

if TYPE_CHECKING:
    from modelserve.operator.handlers import Reconciler

logger = logging.getLogger(__name__)
INSUFFICIENT_GPU = f"Insufficient {GPU_RESOURCE}"
# Once every victim's pods are gone, the scheduler places the waiting pod at its next try:
# it retries an unschedulable pod when pods go, and at the latest after its back-off
# (10 s by default). Until then the waiting model is still waiting for the eviction.
SCHEDULER_RETRY_SECONDS = 30.0
# The ReplicaSet removes the pods with the lowest cost first (among equally Ready ones).
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
GOING_FIRST = "-1000"
# Beyond the preStop sleep: how long a lowered pod drain waits for its pods to terminate
# (the ReplicaSet may have removed others: a pod that stopped being Ready goes first).
LOWERED_GRACE_SECONDS = 30.0


def autoscaled(ms: ModelServe) -> bool:
    return ms.spec.autoscaling is not None and ms.spec.runtime is not Runtime.EXTERNAL


def short_of_gpus(pods: Sequence[PodView]) -> list[PodView]:
    """Pods the scheduler cannot place for lack of GPUs."""
    return [p for p in pods if not p.deleting and INSUFFICIENT_GPU in (p.unschedulable or "")]


@dataclasses.dataclass
class ModelState:
    desired: int
    activated_at: float | None
    # The last change of replicas that scaling down waits a window for: a scale-up, an
    # activation, or this operator's first sight of the model.
    changed_at: float
    last_used: float = 0.0
    published_last_used: float | None = None
    published_at: float = 0.0
    drain: Drain | None = None
    pod_drain: PodDrain | None = None
    sleep_message: str = ""
    window: LoadWindow = dataclasses.field(default_factory=LoadWindow)
    applied: int | None = None  # the replicas last written into the Deployment
    activating_since: float | None = None
    cap: int | None = None  # at most this many replicas until `cap_until`: GPUs ran out
    cap_until: float = 0.0
    note: str = ""
    blocked: tuple[str, str] | None = None
    evicting: tuple[Key, ...] = ()
    evicting_since: float = 0.0
    room_made_at: float | None = None  # when the last victim's pods were gone
    loaded_since: float | None = None

    def view(self) -> AutoscaleView:
        return AutoscaleView(
            desired=self.desired,
            last_request=self.published_last_used,
            activated_at=self.activated_at,
            drain=self.drain,
            pod_drain=self.pod_drain,
            sleep_message=self.sleep_message,
            blocked=self.blocked,
            note=self.note,
        )


def initial_state(ms: ModelServe, status: Mapping[str, Any], now: float) -> ModelState:
    """The state of a model first seen: from its status where an operator wrote one."""
    autoscaling = ms.spec.autoscaling
    assert autoscaling is not None
    found = status.get("desiredReplicas")
    if isinstance(found, int) and "activatedAt" in status:
        desired = initial_replicas(found, autoscaling)
    else:
        desired = initial_replicas(ms.spec.replicas, autoscaling)
    last = epoch_seconds(status.get("lastRequestTime"))
    return ModelState(
        desired=desired,
        activated_at=epoch_seconds(status.get("activatedAt")) or (now if desired else None),
        # After a restart the load window starts empty: no scaling down on its first
        # samples.
        changed_at=now,
        last_used=min(last or 0.0, now),
        published_last_used=last,
        published_at=now,
        drain=Drain.from_status(status.get("drain"), now),
        pod_drain=PodDrain.from_status(status.get("podDrain"), now),
        sleep_message=str(status.get("message") or "") if status.get("phase") == "Sleeping" else "",
    )


class Autoscaler:
    def __init__(
        self,
        settings: OperatorSettings,
        metrics: AutoscalerMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.states: dict[Key, ModelState] = {}
        self.reports = LoadReports(self.wake, clock)
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    def state(self, ms: ModelServe, status: Mapping[str, Any] | None) -> ModelState:
        key = (ms.namespace, ms.name)
        if key not in self.states:
            self.states[key] = initial_state(ms, status or {}, self.clock())
        return self.states[key]

    def replicas(self, ms: ModelServe, status: Mapping[str, Any] | None) -> int:
        """The replicas the Deployment of `ms` runs: spec.replicas, or the autoscaler's."""
        if not autoscaled(ms):
            return ms.spec.replicas
        return self.state(ms, status).desired

    def view(self, ms: ModelServe, status: Mapping[str, Any] | None) -> AutoscaleView | None:
        return self.state(ms, status).view() if autoscaled(ms) else None

    def forget(self, key: Key) -> None:
        """Drop what is kept for `key` (deleted, or no longer autoscaled): its state and
        its metric series, which would otherwise stay for as long as the operator runs."""
        self.states.pop(key, None)
        self.metrics.activations.remove(*key)
        self.metrics.loaded_seconds.remove(*key)

    async def run(self, reconciler: Reconciler) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # the pace of timeouts and windows
                await asyncio.wait_for(self._wakeup.wait(), self.settings.autoscale_interval)
            self._wakeup.clear()
            await self.step(reconciler)

    async def step(self, reconciler: Reconciler) -> None:
        """One pass over every autoscaled ModelServe, then over those waiting for GPUs."""
        now = self.clock()
        reports = self.reports.all()
        totals = summed(reports, now)
        models: dict[Key, tuple[Any, ModelServe]] = {}
        for key in list(reconciler.indexes.modelserves):
            parent = reconciler.parent(*key)
            if parent is None:
                continue
            try:
                ms = ModelServe.from_body(parent)
            except ValidationError:
                continue
            if not autoscaled(ms):
                if key in self.states:
                    self.forget(key)
            elif spec_refusal(ms) is None and key not in reconciler.refusals:
                models[key] = (parent, ms)
        # One model's trouble never stops the others': each is tried on its own.
        for key, (parent, ms) in models.items():
            if reconciler.parent(*key) is None:
                continue  # deleted during an earlier model's await: nothing to scale
            try:
                await self._step_model(reconciler, parent, ms, totals, reports, now)
            except (ClusterError, kopf.TemporaryError, kopf.PermanentError) as error:
                logger.warning("autoscaling %s/%s: %s", *key, error)
            except Exception:
                logger.exception("autoscaling %s/%s failed", *key)
        for key, (parent, ms) in models.items():
            if reconciler.parent(*key) is None:
                continue
            try:
                await self._make_room(reconciler, parent, ms, models, totals, now)
            except (ClusterError, kopf.TemporaryError, kopf.PermanentError) as error:
                logger.warning("making room for %s/%s: %s", *key, error)
            except Exception:
                logger.exception("making room for %s/%s failed", *key)

    async def _step_model(
        self,
        reconciler: Reconciler,
        parent: Any,
        ms: ModelServe,
        totals: Mapping[str, ServerLoad],
        reports: Sequence[LoadReport],
        now: float,
    ) -> None:
        key = (ms.namespace, ms.name)
        autoscaling = ms.spec.autoscaling
        assert autoscaling is not None
        st = self.state(ms, parent.get("status"))
        before = st.view()
        load = totals.get(ms.uid, ServerLoad())
        # A gateway whose clock runs ahead would otherwise keep the model from ever
        # being idle.
        st.last_used = max(st.last_used, min(load.last_used, now))
        deployment = reconciler.workload(ms)
        ready = deployment.ready_replicas if deployment else 0
        pods = [pod for pod in reconciler.indexes.pods.get(key, []) if not pod.deleting]
        desired = st.desired
        if st.drain is not None and (autoscaling.min_replicas > 0 or autoscaling.pinned):
            # Its spec changed during the drain: it may no longer sleep.
            st.drain = None
            self.metrics.drains_cancelled.inc()
            why = "spec.autoscaling no longer lets it sleep"
            await self._event(reconciler, parent, "Normal", "DrainCancelled", f"stays awake: {why}")
        if st.drain is not None:
            st.pod_drain = None
            desired = await self._follow_drain(reconciler, parent, st, ms, reports, now)
        elif desired == 0:
            st.pod_drain = None
            if load.busy or autoscaling.min_replicas > 0:
                desired = max(1, autoscaling.min_replicas)
                st.activated_at = st.activating_since = st.changed_at = now
                st.sleep_message = ""
                self.metrics.activations.labels(*key).inc()
                why = "a request is held for it" if load.busy else "spec.autoscaling.minReplicas"
                await self._event(reconciler, parent, "Normal", "Activated", f"woken: {why}")
        else:
            desired = self._for_load(st, ms, autoscaling, load, ready, pods, now)
            desired = await self._fence_scale_down(reconciler, st, ms, desired, load, reports, now)
            idle = idle_seconds(st.last_used, st.activated_at, None, now)
            if should_sleep(autoscaling, desired, load.busy, idle):
                st.drain = Drain(secrets.token_hex(8), IDLE, f"idle for {round(idle)} s", now)
                st.pod_drain = None
                logger.info("%s/%s: idle for %d s, draining", *key, idle)
        st.desired = desired
        # No Deployment yet: the reconcile path creates it (with this number), after the
        # store Secret its pods need.
        if st.applied != desired and deployment is not None:
            async with reconciler.lock(key):
                await reconciler.apply(
                    build_workload(reconciler.running(ms, parent), self.settings, replicas=desired)
                )
            st.applied = desired
        if st.activating_since is not None and ready >= 1:
            self.metrics.activation_seconds.observe(now - st.activating_since)
            st.activating_since = None
        if ready >= 1:
            if st.loaded_since is not None:
                self.metrics.loaded_seconds.labels(*key).inc(max(0.0, now - st.loaded_since))
            st.loaded_since = now
        else:
            st.loaded_since = None
        changed = st.view() != before
        if (
            st.last_used
            and st.last_used != st.published_last_used
            and (changed or now - st.published_at >= self.settings.last_request_write_seconds)
        ):
            st.published_last_used, st.published_at = st.last_used, now
            changed = True
        if changed:
            reconciler.statuses.mark(key)

    def _for_load(
        self,
        st: ModelState,
        ms: ModelServe,
        autoscaling: Autoscaling,
        load: ServerLoad,
        ready: int,
        pods: Sequence[PodView],
        now: float,
    ) -> int:
        """Replicas for the load; fewer where a scale-up's pods find no GPU (other models
        are evicted for an activation only, never for more replicas)."""
        st.window.add(now, load.in_flight + load.held, autoscaling.window_seconds)
        short = short_of_gpus(pods)
        if st.desired > 1 and ready >= 1 and short:
            running = max(1, len(pods) - len(short))
            st.cap, st.cap_until = running, now + autoscaling.window_seconds
            st.note = (
                f"{running} of {st.desired} replicas run: no free GPU of type "
                f"{gpu_type_name(ms.spec.resources.gpu_type)} for more (no model is evicted "
                "to scale up)"
            )
        if st.cap is not None and now >= st.cap_until:
            st.cap, st.note = None, ""
        desired = scaled_replicas(
            st.desired,
            load.in_flight + load.held,
            st.window.average(),
            autoscaling,
            st.cap,
            now=now,
            changed_at=st.changed_at,
        )
        if desired > st.desired:
            st.changed_at = now
        return desired

    async def _fence_scale_down(
        self,
        reconciler: Reconciler,
        st: ModelState,
        ms: ModelServe,
        scaled: int,
        load: ServerLoad,
        reports: Sequence[LoadReport],
        now: float,
    ) -> int:
        """The replicas to run now when the load would scale an awake model down to
        `scaled` (>= 1): the current number until the replicas that go have no request
        left (status.podDrain), then fewer, with those pods marked to go first."""
        key = (ms.namespace, ms.name)
        autoscaling = ms.spec.autoscaling
        assert autoscaling is not None
        current = st.desired
        busy_now = math.ceil((load.in_flight + load.held) / autoscaling.target_requests)
        wanted = max(scaled, min(busy_now, autoscaling.max_replicas))
        pods = [pod for pod in reconciler.indexes.pods.get(key, []) if not pod.deleting]
        if st.pod_drain is None:
            if wanted >= current:
                return scaled
            if is_multinode(ms):
                chosen = leaders_to_drain(pods, wanted)
            else:
                chosen = pods_to_drain(
                    [PodLoad(p.name, p.ready, p.created, load.pods.get(p.name, 0)) for p in pods],
                    current - wanted,
                )
            if chosen is None:
                return wanted  # pods not Ready go first anyway: no fence to build
            st.pod_drain = PodDrain(secrets.token_hex(8), chosen, now)
            logger.info("%s/%s: %d -> %d, draining %s", *key, current, wanted, ", ".join(chosen))
            return current
        if st.pod_drain.lowered_at is not None:
            # Lowered: the fence stays until the pods that go are terminating (their
            # endpoints then take nothing new), so no request reaches them in between.
            grace = self.settings.drain_seconds + LOWERED_GRACE_SECONDS
            if pod_drain_released(st.pod_drain, {pod.name for pod in pods}, now, grace):
                st.pod_drain = None
            return max(scaled, current)
        outcome, st.pod_drain = pod_drain_outcome(
            st.pod_drain,
            ms.uid,
            reports,
            desired=current,
            wanted=wanted,
            ready_pods={pod.name for pod in pods if pod.ready},
            now=now,
            ack_seconds=self.settings.drain_ack_seconds,
            drain_seconds=self.settings.replica_drain_seconds,
        )
        drain = st.pod_drain
        if outcome is PodDrainOutcome.WAIT:
            return current
        if outcome is PodDrainOutcome.CANCEL_LOAD:
            st.pod_drain = None
            logger.info("%s/%s: the load wants %d replicas again, no pod drained", *key, wanted)
            return scaled
        if outcome is PodDrainOutcome.CANCEL_ACK:
            st.pod_drain = None
            ack = self.settings.drain_ack_seconds
            logger.warning(
                "%s/%s: not every gateway replica acknowledged the pod drain within %g s; "
                "it stays at %d replicas",
                *key,
                ack,
                current,
            )
            return current
        if outcome is PodDrainOutcome.GONE:
            st.pod_drain = None
            logger.info("%s/%s: a pod to drain is no longer Ready; scaling down as is", *key)
            return wanted
        target = max(wanted, current - len(drain.pods))
        going = drain.pods[: current - target]
        if outcome is PodDrainOutcome.OVERDUE:
            logger.warning(
                "%s/%s: %s still had requests %g s after the gateways stopped sending them "
                "more; they go anyway",
                *key,
                ", ".join(going),
                self.settings.replica_drain_seconds,
            )
        if not is_multinode(ms):  # LeaderWorkerSet removes the drained (highest) groups
            for name in going:
                await reconciler.cluster.annotate_pod(
                    ms.namespace, name, {DELETION_COST: GOING_FIRST}
                )
        st.pod_drain = dataclasses.replace(drain, pods=going, lowered_at=now)
        logger.info("%s/%s: %d -> %d, %s go", *key, current, target, ", ".join(going))
        return target

    async def _follow_drain(
        self,
        reconciler: Reconciler,
        parent: Any,
        st: ModelState,
        ms: ModelServe,
        reports: Sequence[LoadReport],
        now: float,
    ) -> int:
        """The replicas after looking at the drain: 0 once every gateway agreed."""
        drain = st.drain
        assert drain is not None
        ack = self.settings.drain_ack_seconds
        outcome = drain_outcome(drain, ms.uid, reports, now, ack)
        if outcome is DrainOutcome.WAIT:
            return st.desired
        st.drain = None
        if outcome is DrainOutcome.CANCEL:
            self.metrics.drains_cancelled.inc()
            why = (
                f"not every gateway replica acknowledged within {ack:g} s"
                if now - drain.since > ack
                else "a request came"
            )
            await self._event(reconciler, parent, "Normal", "DrainCancelled", f"stays awake: {why}")
            return st.desired
        st.sleep_message = f"asleep since {rfc3339(now)}: {drain.message}"
        st.window.samples.clear()
        st.cap, st.note = None, ""
        self.metrics.sleeps.labels(drain.reason.lower()).inc()
        if drain.reason == EVICTED:
            self.metrics.evictions.labels("lru").inc()
            await self._event(reconciler, parent, "Warning", "Evicted", drain.message)
            waiting = reconciler.parent(*drain.for_model) if drain.for_model else None
            if waiting is not None:
                victim = shown((ms.namespace, ms.name), waiting["metadata"]["namespace"])
                message = f"{victim} was put to sleep to free its GPUs"
                await self._event(reconciler, waiting, "Normal", "EvictedForThis", message)
        logger.info("%s/%s: asleep (%s)", ms.namespace, ms.name, drain.message)
        return 0

    async def _make_room(
        self,
        reconciler: Reconciler,
        parent: Any,
        ms: ModelServe,
        models: Mapping[Key, tuple[Any, ModelServe]],
        totals: Mapping[str, ServerLoad],
        now: float,
    ) -> None:
        """A model woken whose pods find no GPU of its type: put the least recently used
        models that may go to sleep, or say in its status why none can."""
        key = (ms.namespace, ms.name)
        st = self.states.get(key)
        if st is None:
            return  # deleted (and forgotten) during an await of this pass
        before = st.view()
        deployment = reconciler.workload(ms)
        ready = deployment.ready_replicas if deployment else 0
        short = short_of_gpus(list(reconciler.indexes.pods.get(key, [])))
        gpus = ms.spec.resources.gpus
        if not (st.desired > 0 and ready == 0 and gpus > 0 and short and st.drain is None):
            st.blocked, st.evicting = None, ()
        elif st.evicting and self._evicting(reconciler, key, st, now):
            pass  # one eviction at a time per waiting model
        else:
            autoscaling = ms.spec.autoscaling
            assert autoscaling is not None
            plan = plan_eviction(
                namespace=ms.namespace,
                gpu_type=ms.spec.resources.gpu_type,
                priority=autoscaling.priority,
                needed=gpus * len(short),
                candidates=self._candidates(reconciler, ms, models, totals),
                now=now,
            )
            st.evicting, st.evicting_since, st.room_made_at = plan.victims, now, None
            if plan.victims:
                for victim in plan.victims:
                    found = self.states.get(victim)
                    if found is None:
                        continue  # deleted meanwhile: its GPUs come free anyway
                    # The victim's status and Event: the waiting model named only where
                    # the victim's owner may see it.
                    message = f"evicted to make room for {shown(key, victim[0])}"
                    found.drain = Drain(secrets.token_hex(8), EVICTED, message, now, for_model=key)
                    reconciler.statuses.mark(victim)
                names = ", ".join(named(victim) for victim in plan.victims)
                logger.info("%s/%s waits for GPUs: evicting %s", *key, names)
                st.blocked = (
                    WAITING_FOR_EVICTION,
                    f"no GPU of type {gpu_type_name(ms.spec.resources.gpu_type)} free: "
                    f"putting {listed(plan.victims, ms.namespace)} to sleep to make room",
                )
                self.wake()  # the victims' drains are followed in the next pass
            else:
                assert plan.blocked is not None
                st.blocked = (plan.blocked, plan.message)
        if st.view() != before:
            reconciler.statuses.mark(key)

    def _evicting(self, reconciler: Reconciler, key: Key, st: ModelState, now: float) -> bool:
        """Whether the eviction started for `key` goes on: a victim still drains for it,
        or has gone to 0 and its pods (and GPUs) are not gone yet, or they are gone and
        the scheduler has not had its next try at the waiting pod yet."""
        if now - st.evicting_since > self.settings.drain_seconds + 120:
            return False
        victims = [self.states.get(victim) for victim in st.evicting]
        for victim, found in zip(st.evicting, victims, strict=True):
            if found is None:
                continue  # deleted: its GPUs are free too
            if found.drain is not None and found.drain.for_model == key:
                return True
            if found.desired > 0:
                return False  # its drain was called off (a request came): plan again
            if reconciler.indexes.pods.get(victim):
                return True
        if st.room_made_at is None:
            st.room_made_at = now
        return now - st.room_made_at < SCHEDULER_RETRY_SECONDS

    def _candidates(
        self,
        reconciler: Reconciler,
        ms: ModelServe,
        models: Mapping[Key, tuple[Any, ModelServe]],
        totals: Mapping[str, ServerLoad],
    ) -> list[Candidate]:
        """The other awake autoscaled models on GPUs of exactly the type of `ms`."""
        found: list[Candidate] = []
        for other_key, (_, other) in models.items():
            st = self.states.get(other_key)
            res = other.spec.resources
            autoscaling = other.spec.autoscaling
            if (
                other.uid == ms.uid
                or st is None
                or autoscaling is None
                or st.desired == 0
                or res.gpus == 0
                or res.gpu_type != ms.spec.resources.gpu_type
            ):
                continue
            pods: list[PodView] = list(reconciler.indexes.pods.get(other_key, []))
            placed = [pod for pod in pods if not pod.deleting and not pod.unschedulable]
            if not placed:
                continue
            found.append(
                Candidate(
                    key=other_key,
                    gpus=res.gpus * len(placed),
                    pinned=autoscaling.pinned,
                    priority=autoscaling.priority,
                    busy=totals.get(other.uid, ServerLoad()).busy,
                    activated_at=st.activated_at,
                    last_used=st.last_used,
                    min_residence_seconds=autoscaling.min_residence_seconds,
                    draining=st.drain is not None,
                    min_replicas=autoscaling.min_replicas,
                )
            )
        return found

    async def _event(
        self, reconciler: Reconciler, involved: Any, kind: str, reason: str, message: str
    ) -> None:
        try:
            await reconciler.cluster.post_event(involved, kind, reason, message)
        except ClusterError as error:  # the decision stands; the Event is a courtesy
            if not error.gone:
                meta = involved["metadata"]
                logger.warning("no Event on %s/%s: %s", meta["namespace"], meta["name"], error)
