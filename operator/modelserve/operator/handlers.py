"""The kopf handlers: parse, build, apply, report. Decisions live in builders and status.

Handlers are registered on a registry made by `build_registry(settings)`, so that
importing this module does nothing and tests can run an operator with their settings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import httpx
import kopf
from prometheus_client import start_http_server
from pydantic import ValidationError

from modelserve.common.modelserve import GROUP, PLURAL, VERSION, ModelServe, Runtime
from modelserve.common.rollouts import MODEL_VERSION_ANNOTATION, ROLLOUT_ANNOTATION
from modelserve.common.supervision import start_supervised
from modelserve.operator.autoscaling.autoscaler import Autoscaler
from modelserve.operator.autoscaling.metrics import AutoscalerMetrics
from modelserve.operator.autoscaling.reports import follow_leases
from modelserve.operator.builders import (
    MANAGED_BY,
    NAME_LABEL,
    OPERATOR,
    build_store_secret,
    controller_uid,
    store_secret_name,
)
from modelserve.operator.children import build_children, wanted_children
from modelserve.operator.cluster import Cluster, ClusterError
from modelserve.operator.cluster import login as cluster_login
from modelserve.operator.model_listing import store_listing
from modelserve.operator.multinode import LWS_KIND, is_multinode
from modelserve.operator.probing import ApiKey, ExternalProber, api_key_for
from modelserve.operator.reconcile_metrics import ReconcileMetrics
from modelserve.operator.refusals import spec_refusal
from modelserve.operator.rollouts import decisions as rollouts
from modelserve.operator.rollouts.metrics import RolloutMetrics
from modelserve.operator.rollouts.tracking import RolloutTracker
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.status import DeploymentView, PodView, Refusal, compute_status
from modelserve.operator.store import ModelRefused, ModelStore, StoreUnavailable
from modelserve.operator.workqueue import Key, WorkQueue

MS = (GROUP, VERSION, PLURAL)
logger = logging.getLogger(__name__)
# Children watched for drift and kept in indexes, so that what a ModelServe no longer
# wants is found and deleted. Not Secrets: the operator may not list or watch them (its
# one Secret per ModelServe is known by name, rewritten at each renewal of its URLs).
CHILD_KINDS: tuple[tuple[str, ...], ...] = (
    ("v1", "services"),
    ("v1", "persistentvolumeclaims"),
    ("traefik.io", "v1alpha1", "ingressroutes"),
    # Either kind of per-server route (OPERATOR_ROUTE_KIND), both watched: switching kinds
    # prunes the other kind's routes. Where a kind's CRD is not installed, kopf watches
    # nothing for it until it is.
    ("gateway.networking.k8s.io", "v1", "httproutes"),
    # Made by earlier versions only (forward-auth): watched so that they are pruned.
    ("traefik.io", "v1alpha1", "middlewares"),
    # The fence of a model over several nodes (OPERATOR_GROUP_NETWORK_POLICY); watched with
    # the setting off too, so that turning it off prunes them.
    ("networking.k8s.io", "v1", "networkpolicies"),
)
# The workloads: a Deployment, or a LeaderWorkerSet for a model over several nodes
# (where LeaderWorkerSet is not installed, kopf watches nothing for it).
LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")
WORKLOAD_KINDS = (("apps", "v1", "deployments"), LWS)
WORKLOADS = ("Deployment", "LeaderWorkerSet")
OWNED_KINDS = (*WORKLOAD_KINDS, *CHILD_KINDS)
OURS: dict[str, Any] = {MANAGED_BY: OPERATOR, NAME_LABEL: kopf.PRESENT}
# A child the namespace's ResourceQuota refuses: the reconcile is tried again this often.
QUOTA_RETRY_SECONDS = 15
LWS_MISSING = (
    "spec.resources.nodes runs the model as a LeaderWorkerSet, and this cluster does not "
    "serve leaderworkerset.x-k8s.io/v1: install LeaderWorkerSet (docs/multi-node.md)"
)


def parse(body: kopf.Body | dict[str, Any]) -> ModelServe:
    try:
        return ModelServe.from_body(body)
    except ValidationError as error:
        # The CRD refuses most bad specs; what passes it and still fails here never will work.
        raise kopf.PermanentError(f"invalid spec: {error}") from error


def _one(store: kopf.Store[Any] | None) -> Any:
    return next(iter(store), None) if store else None


@dataclasses.dataclass(frozen=True)
class OwnedChild:
    """A child as the owned-children indexes keep it: enough to prune it."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    owner_uid: str | None

    @classmethod
    def from_body(cls, body: kopf.Body) -> OwnedChild:
        meta = body.metadata
        return cls(
            body["apiVersion"], body["kind"], meta["namespace"], meta["name"], meta["uid"],
            controller_uid(body),
        )  # fmt: skip

    def ref(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }


@dataclasses.dataclass(frozen=True)
class Indexes:
    """kopf's indexes, live: what statuses are computed from, kept current by watches."""

    modelserves: kopf.Index[Key, Any]
    deployments: kopf.Index[Key, DeploymentView]
    # LeaderWorkerSets, seen as Deployments whose replicas are groups of pods.
    groups: kopf.Index[Key, DeploymentView]
    pods: kopf.Index[Key, PodView]
    # Per child kind (plural), every child labelled as ours, by its ModelServe.
    owned: dict[str, kopf.Index[Key, OwnedChild]]


class Reconciler:
    """What the handlers share: settings, the cluster, the indexes, the last applied state."""

    def __init__(
        self,
        settings: OperatorSettings,
        cluster: Cluster,
        prober: ExternalProber,
        indexes: Indexes,
        statuses: WorkQueue,
        store: ModelStore,
        autoscaler: Autoscaler,
        rollouts: RolloutTracker,
        metrics: ReconcileMetrics,
    ) -> None:
        self.settings = settings
        # Reconciles by outcome, their duration, ModelServes by phase (/metrics).
        self.metrics = metrics
        # Set-active rollouts: which model each Deployment runs, and how a change ends.
        self.rollouts = rollouts
        # The replicas of ModelServes with spec.autoscaling: read by every build of a
        # Deployment, so that no reconcile or repair resets them to spec.replicas.
        self.autoscaler = autoscaler
        self.cluster = cluster
        self.prober = prober
        self.store = store
        # Why the operator runs nothing for a ModelServe, where it refuses one.
        self.refusals: dict[Key, Refusal] = {}
        # One converge at a time per ModelServe: kopf's handlers and the URL renewals.
        self.locks: dict[Key, asyncio.Lock] = {}
        self.indexes = indexes
        # ModelServes whose status is to be computed again.
        self.statuses = statuses
        # ModelServes whose child could not be put back or deleted after a watch event
        # (`_repair`): converged again, by one drainer, until it goes through.
        self.repairs = WorkQueue()
        # Each child as we last applied it, keyed by (namespace, owner, kind, name): a child
        # seen in another version was changed by someone else.
        self.applied: dict[tuple[str, str, str, str], str] = {}
        # The status last written per ModelServe, with the uid of the object it was written
        # to (`last_written`): the watch's copy lags our own writes, and comparing with it
        # would write the same status again on every child event.
        self.reported: dict[Key, tuple[str, Any]] = {}

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one child; returns it as stored (None if its namespace is going away).
        NameTaken when an object of its kind and name is there already and is not its
        ModelServe's: applied by force, it would become theirs (and go with it)."""
        try:
            await self._check_name(obj)
            stored = await self.cluster.apply(obj)
        except ClusterError as error:
            if error.gone:
                return None  # deleted with its namespace: nothing left to reconcile
            if error.status == 404 and obj["kind"] == LWS_KIND:
                raise KindMissing(LWS_MISSING) from error
            if error.retryable:
                raise kopf.TemporaryError(str(error), delay=5) from error
            if error.over_quota:
                raise kopf.TemporaryError(str(error), delay=QUOTA_RETRY_SECONDS) from error
            await self._warn_not_applied(obj, error)
            raise kopf.PermanentError(str(error)) from error
        self.applied[_child_key(stored)] = _version(stored)
        return stored

    async def _warn_not_applied(self, obj: dict[str, Any], error: ClusterError) -> None:
        """A Warning Event (reason NotApplied) on the child's ModelServe: the API server
        refused the child for good, so what was there before (if anything) stays, and
        `kubectl describe ms` says why."""
        meta = obj["metadata"]
        owner = next(iter(meta.get("ownerReferences") or []), None)
        if owner is None:
            return
        involved = {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "metadata": {
                "name": owner["name"],
                "namespace": meta["namespace"],
                "uid": owner["uid"],
            },
        }
        message = f"{obj['kind']} {meta['name']} not applied: {error}"
        try:
            await self.cluster.post_event(involved, "Warning", "NotApplied", message)
        except ClusterError as failed:
            logger.warning("no event for %s: %s", message, failed)

    async def _check_name(self, obj: dict[str, Any]) -> None:
        """NameTaken unless `obj`'s name is free or already its ModelServe's: as the
        watches show the children (a read only for one they do not show), or, for a
        Secret (not watched), as this process last applied it."""
        uid = controller_uid(obj)
        meta = obj["metadata"]
        key = (meta["namespace"], meta["labels"][NAME_LABEL])
        shown = (
            child
            for index in self.indexes.owned.values()
            for child in index.get(key, [])
            if child.kind == obj["kind"] and child.name == meta["name"]
        )
        if any(child.owner_uid == uid for child in shown):
            return
        if obj["kind"] == "Secret" and _child_key(obj) in self.applied:
            return
        found = await self.cluster.read(obj["apiVersion"], obj["kind"], *_where(obj))
        if found is not None and controller_uid(found) != uid:
            raise NameTaken(
                f"{obj['kind']} {meta['namespace']}/{meta['name']} exists and is not this"
                " server's: the operator leaves it as it is; give the ModelServe another name"
            )

    async def _check_group_names(self, ms: ModelServe) -> None:
        """NameTaken when a Service that LeaderWorkerSet would make for a group of `ms`
        (`<name>-<index>`, the headless Service its workers find the leader by) is there
        and is not its: LeaderWorkerSet makes none then, and the group's workers would
        never find their leader (another ModelServe named `<name>-0`, say)."""
        for index in range(self.replicas(ms)):
            name = f"{ms.name}-{index}"
            found = await self.cluster.read("v1", "Service", ms.namespace, name)
            owners = (found or {}).get("metadata", {}).get("ownerReferences") or []
            # LeaderWorkerSet v0.7.0 makes it owned by the group's leader pod, of the same
            # name (pod_controller.go); owned by the set itself is its too.
            theirs = {(LWS_KIND, ms.name), ("Pod", name)}
            if found is not None and not any(
                (owner.get("kind"), owner.get("name")) in theirs for owner in owners
            ):
                raise NameTaken(
                    f"Service {ms.namespace}/{name} exists and is not LeaderWorkerSet's: group"
                    f" {index} of this server needs that name; give the ModelServe another name"
                )

    async def delete(self, obj: dict[str, Any], why: str) -> None:
        """Delete a child of ours; the log says which and `why`."""
        try:
            await self.cluster.delete(obj)
        except ClusterError as error:
            if error.gone:
                return
            if error.retryable:
                raise kopf.TemporaryError(str(error), delay=5) from error
            raise kopf.PermanentError(str(error)) from error
        logger.info("deleted %s %s/%s: %s", obj["kind"], *_where(obj), why)

    def workload(self, ms: ModelServe) -> DeploymentView | None:
        """The Deployment of `ms` as last seen, or its LeaderWorkerSet for a model over
        several nodes (the other kind, if still there, is being pruned)."""
        index = self.indexes.groups if is_multinode(ms) else self.indexes.deployments
        view: DeploymentView | None = _one(index.get((ms.namespace, ms.name)))
        return view

    def replicas(self, ms: ModelServe) -> int:
        """The replicas the Deployment of `ms` runs now."""
        parent = _one(self.indexes.modelserves.get((ms.namespace, ms.name)))
        return self.autoscaler.replicas(ms, (parent or {}).get("status"))

    def running(self, ms: ModelServe, parent: Any) -> ModelServe:
        """`ms` with the model its Deployment runs now (`rollouts.serving_uri`), judged by
        the status this operator last wrote (the watch's copy may lag it)."""
        status = last_written(self.reported, parent) or parent.get("status") or {}
        return self.rollouts.serving(ms, parent, status)

    def lock(self, key: Key) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    async def model_files(self, ms: ModelServe) -> str:
        """The store Secret's content for `ms`: its files' digests and fresh URLs (its
        model's and its adapters')."""
        return await store_listing(self.store, ms)

    def wanted(self, ms: ModelServe) -> set[tuple[str, str]]:
        """(kind, name) of the children `ms` should have: none while it is refused."""
        if self.refused(ms):
            return set()
        return wanted_children(ms, self.settings)

    def refused(self, ms: ModelServe) -> Refusal | None:
        """Why the operator runs nothing for `ms`, if it runs nothing."""
        return spec_refusal(ms) or self.refusals.get((ms.namespace, ms.name))

    def owned(self, ms: ModelServe) -> list[OwnedChild]:
        """The children `ms` controls, as the watches last showed them (not its Secret)."""
        key = (ms.namespace, ms.name)
        return [
            child
            for index in self.indexes.owned.values()
            for child in index.get(key, [])
            if child.owner_uid == ms.uid
        ]

    def missing(self, ms: ModelServe) -> list[str]:
        """The children `ms` wants that the watches have not shown (yet), as "Service
        ms-a", but for its workload (its status speaks of that already) and its store
        Secret (not watched, and applied before the others)."""
        present = {(child.kind, child.name) for child in self.owned(ms)}
        return sorted(
            f"{kind} {name}"
            for kind, name in wanted_children(ms, self.settings) - present
            if kind != "Secret" and kind not in WORKLOADS
        )

    async def converge(self, ms: ModelServe) -> bool:
        """Apply every child `ms` wants, delete every child it owns and no longer wants.
        Whether a workload was applied. The caller holds the ModelServe's lock."""
        key = (ms.namespace, ms.name)
        refusal = spec_refusal(ms)
        children: list[dict[str, Any]] = []
        if refusal is None and ms.spec.runtime is not Runtime.EXTERNAL:
            try:
                children = [build_store_secret(ms, await self.model_files(ms))]
            except ModelRefused as error:
                refusal = Refusal("ModelAvailable", "NotRecorded", str(error))
            except StoreUnavailable as error:
                raise kopf.TemporaryError(str(error), delay=30) from error
        if refusal is None:
            self.refusals.pop(key, None)
            children += build_children(ms, self.settings, self.replicas(ms))
        else:
            self._refuse(key, refusal)
            children = []
        deployed = False
        try:
            if children and is_multinode(ms):
                await self._check_group_names(ms)
            for child in children:
                stored = await self.apply(child)
                deployed = deployed or (stored is not None and stored["kind"] in WORKLOADS)
        except KindMissing as missing:
            # Tried again at each renewal of the model's URLs (model_url_refresh_seconds).
            self._refuse(key, Refusal("Ready", "LeaderWorkerSetMissing", str(missing)))
            children = []
        except NameTaken as taken:
            # Tried again at each change of the spec and renewal of the model's URLs.
            self._refuse(key, Refusal("Ready", "NameTaken", str(taken)))
            children = []
        wanted = {(c["kind"], c["metadata"]["name"]) for c in children}
        await self.prune(ms, wanted, _deletion_reason(refusal, "no longer wanted (pruned)"))
        return deployed

    def _refuse(self, key: Key, refusal: Refusal) -> None:
        """Remember why `key` runs nothing (its status says so); logged when it is news."""
        if self.refusals.get(key) != refusal:
            logger.warning("refusing %s/%s: %s", *key, refusal.message)
        self.refusals[key] = refusal

    async def prune(self, ms: ModelServe, wanted: set[tuple[str, str]], why: str) -> None:
        """Delete what `ms` controls and does not want (`why`, for the log): found in the
        indexes, and its store Secret by name (Secrets are not watched)."""
        for child in self.owned(ms):
            if (child.kind, child.name) not in wanted:
                await self.delete(child.ref(), why)
        secret = store_secret_name(ms)
        if ("Secret", secret) in wanted:
            return
        found = await self.cluster.read_secret(ms.namespace, secret)
        if found is not None and controller_uid(found) == ms.uid:
            await self.delete(found, why)

    async def renew(self, key: Key) -> None:
        """Sign new URLs for a served ModelServe's model (its objects and digests read
        again); where that changes whether it is refused, converge it again."""
        parent = _one(self.indexes.modelserves.get(key))
        if parent is None or parent["metadata"].get("deletionTimestamp"):
            return
        try:
            ms = self.running(ModelServe.from_body(parent), parent)
        except ValidationError:
            return
        if ms.spec.runtime is Runtime.EXTERNAL or spec_refusal(ms):
            return
        async with self.lock(key):
            try:
                files = await self.model_files(ms)
            except ModelRefused as error:
                refused = Refusal("ModelAvailable", "NotRecorded", str(error))
                if self.refusals.get(key) != refused:
                    await self.converge(ms)
                    self.statuses.mark(key)
                return
            except StoreUnavailable as error:
                logger.warning("URLs of %s/%s not renewed: %s", *key, error)
                return
            if key in self.refusals:
                await self.converge(ms)  # refused before, a recorded download now
                self.statuses.mark(key)
            else:
                await self.apply(build_store_secret(ms, files))

    async def renew_all(self) -> None:
        """Every `model_url_refresh_seconds`, renew every served ModelServe's URLs."""
        while True:
            await asyncio.sleep(self.settings.model_url_refresh_seconds)
            for key in list(self.indexes.modelserves):
                try:
                    await self.renew(key)
                except Exception:  # one ModelServe's trouble stops no other renewal
                    logger.exception("renewing the URLs of %s/%s failed", *key)

    def repair_later(self, key: Key, error: kopf.TemporaryError) -> None:
        """Converge `key` again in `error.delay` seconds: a child of it could not be put
        back (or deleted) for a moment, and no watch event may come to try again."""
        delay = error.delay if error.delay is not None else 5.0
        logger.warning("repairing %s/%s failed, tried again in %.0f s: %s", *key, delay, error)
        asyncio.get_running_loop().call_later(delay, self.repairs.mark, key)

    async def repair(self, key: Key) -> None:
        """The repairs queue's work: converge ModelServe `key` as a reconcile would, unless
        it is gone or going; tried again while the cluster refuses it for a moment."""
        parent = self.parent(*key)
        if parent is None:
            return
        try:
            ms = self.running(ModelServe.from_body(parent), parent)
        except ValidationError:
            return  # the reconcile handler reports an invalid spec
        try:
            async with self.lock(key):
                await self.converge(ms)
        except kopf.TemporaryError as error:
            self.repair_later(key, error)
        except kopf.PermanentError as error:
            logger.error("repairing %s/%s failed: %s", *key, error)
        self.statuses.mark(key)

    def drifted(self, event: str | None, body: kopf.Body) -> bool:
        """Whether someone else deleted or changed a child since we last applied it.

        The initial listing (no event type) is left to the resume handler, which applies
        every child anyway; our own writes come back as events with the version we recorded.
        """
        if event == "DELETED":
            return True
        applied = self.applied.get(_child_key(body))
        return event is not None and applied is not None and applied != _version(body)

    def owner(self, namespace: str, labels: kopf.Labels) -> Any:
        """A child's ModelServe as last seen, unless it is gone or going."""
        return self.parent(namespace, labels.get(NAME_LABEL, ""))

    def parent(self, namespace: str, name: str) -> Any:
        """A ModelServe as last seen, unless it is gone or going."""
        parent = _one(self.indexes.modelserves.get((namespace, name)))
        return None if parent is None or parent["metadata"].get("deletionTimestamp") else parent

    def forget(self, namespace: str, name: str) -> None:
        self.prober.forget(namespace, name)
        self.reported.pop((namespace, name), None)
        self.refusals.pop((namespace, name), None)
        self.locks.pop((namespace, name), None)
        self.autoscaler.forget((namespace, name))
        for key in [key for key in self.applied if key[:2] == (namespace, name)]:
            del self.applied[key]

    async def refresh(self, key: Key) -> None:
        """Compute the status of ModelServe `key` from the indexes; write it if it changed.

        Called by the status queue's drainers, never for one key twice at a time.
        """
        parent = _one(self.indexes.modelserves.get(key))
        if parent is None or parent["metadata"].get("deletionTimestamp"):
            return
        try:
            ms = ModelServe.from_body(parent)
        except ValidationError:
            return  # the reconcile handler reports an invalid spec
        deployment = self.workload(ms)
        pods = list(self.indexes.pods.get(key, []))
        autoscale = self.autoscaler.view(ms, parent.get("status"))
        refusal = self.refused(ms)
        rollout = serving = None
        missing: list[str] = []
        if refusal is None and ms.spec.runtime is not Runtime.EXTERNAL:
            missing = self.missing(ms)
            before = last_written(self.reported, parent) or parent.get("status") or {}
            rollout = self.rollouts.look(ms, parent, before, deployment, pods, autoscale)
            if rollout.started:
                rollout = await self._checked(ms, rollout)
            serving = self.rollouts.serving(ms, parent, rollout.to_status()).spec.model.uri
        status = compute_status(
            ms,
            self.settings,
            deployment=deployment,
            pods=pods,
            probe=self.prober.results.get(key),
            previous=dict(parent.get("status") or {}),
            refusal=refusal,
            autoscale=autoscale,
            rollout=rollout.to_status() if rollout else None,
            serving_uri=serving,
            missing=missing,
        )
        if await self.report(parent, status) and rollout is not None:
            await self.rollouts.announce(parent, rollout)
        # The Deployment changes model only once the status says so (every gateway then
        # knows of the rollout before a pod is replaced), and until it runs that model: a
        # converge that failed is done again at the next look.
        running = self.running(ms, parent)
        if deployment is not None and deployment.model_uri not in (None, running.spec.model.uri):
            async with self.lock(key):
                await self.converge(running)

    async def _checked(self, ms: ModelServe, started: rollouts.Step) -> rollouts.Step:
        """A rollout that starts, unless the store does not have its model as a recorded
        one: then it is put back at once (a converge would run nothing for the server)."""
        wanted = started.rollout.target.uri if started.rollout else ""
        try:
            await self.model_files(rollouts.with_model_uri(ms, wanted))
        except ModelRefused as error:
            return rollouts.refused(started, str(error), time.time())
        except StoreUnavailable as error:
            logger.warning("%s/%s: the store cannot say whether %s is recorded: %s",
                           ms.namespace, ms.name, wanted, error)  # fmt: skip
        return started

    async def report(self, body: dict[str, Any], status: dict[str, Any]) -> bool:
        """Write the status if anything but timestamps changed; an Event on a new phase.
        Whether it was written."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        previous = last_written(self.reported, body) or _comparable(dict(body.get("status") or {}))
        if previous == _comparable(status):
            return False
        if status["observedGeneration"] < previous.get("observedGeneration", 0):
            # Only the autoscaler's fields of this older copy could be news: left for the
            # next computation, from the newer copy.
            return False  # computed from a copy of the ModelServe older than the last written
        await self.cluster.patch_status(meta["namespace"], meta["name"], status)
        self.reported[key] = (meta.get("uid", ""), _comparable(status))
        if previous.get("phase") != status["phase"]:
            kind = "Warning" if status["phase"] in ("Failed", "Degraded") else "Normal"
            try:
                await self.cluster.post_event(body, kind, status["phase"], status["message"])
            except ClusterError as error:  # the status is written; the Event is a courtesy
                if not error.gone:
                    logger.warning("no Event for %s/%s: %s", *key, error)
        return True


class KindMissing(RuntimeError):
    """A child's kind is not served by this cluster (its CRD is not installed)."""


class NameTaken(RuntimeError):
    """A child's name is held by an object that is not its ModelServe's."""


def _where(obj: Any) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _child_key(obj: Any) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (meta["namespace"], meta["labels"][NAME_LABEL], obj["kind"], meta["name"])


def _version(obj: Any) -> str:
    """A workload's generation (its status changes all the time), else resourceVersion."""
    meta = obj["metadata"]
    return str(meta["generation"]) if obj["kind"] in WORKLOADS else str(meta["resourceVersion"])


def last_written(reported: Mapping[Key, tuple[str, Any]], body: Mapping[str, Any]) -> Any:
    """The status this operator last wrote to the ModelServe `body`, or None: one written
    to an earlier object of its name (deleted, and made again, perhaps by someone else)
    says nothing of this one, least of all which model it runs."""
    meta = body["metadata"]
    uid, status = reported.get((meta["namespace"], meta["name"]), (None, None))
    return status if uid is not None and uid == meta.get("uid") else None


def _comparable(status: dict[str, Any]) -> Any:
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
    ]
    # A None (a field the merge patch deletes) compares as an absent one.
    kept = {k: v for k, v in status.items() if k not in ("conditions", "kopf") and v is not None}
    return {**kept, "c": conditions}


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    operator_settings = settings

    @kopf.on.login(id="login", registry=registry)
    async def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.AiohttpSession:
        """kopf's own session, with a bounded connection pool.

        kopf's default pool is unbounded: with thousands of objects changing at once it
        opened hundreds of TLS connections, each with its buffers. Each watch holds one
        connection, hence the headroom.
        """
        info = cluster_login(settings)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=operator_settings.watch_connections, ssl=info.as_ssl_context()
            ),
            headers=info.as_http_headers(),
        )
        return kopf.AiohttpSession(
            aiohttp_session=session,
            server=info.server,
            default_namespace=info.default_namespace,
            expiration=info.expiration,
        )

    @kopf.on.startup(id="start", registry=registry)
    async def start(
        settings: kopf.OperatorSettings,
        memo: kopf.Memo,
        modelserves: kopf.Index[Key, Any],
        deployments: kopf.Index[Key, DeploymentView],
        groups: kopf.Index[Key, DeploymentView],
        pods: kopf.Index[Key, PodView],
        **kwargs: Any,
    ) -> None:
        # kopf keeps a worker per object until it has been idle this long (5 s by default);
        # with thousands of children changing at once, idle workers add up.
        settings.batching.idle_timeout = 0.5
        # Events are ours (a phase change each), not one per log line of every handler.
        settings.posting.loggers = False
        # Progress in annotations: the CRD's status schema is ours, kopf's state is not in it.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        memo.http = httpx.AsyncClient(timeout=operator_settings.external_probe_timeout)
        cluster = Cluster(settings, operator_settings.api_connections)
        statuses = WorkQueue()
        prober = ExternalProber(
            memo.http,
            operator_settings.external_probe_interval,
            _api_key_reader(cluster),
            statuses.mark,
        )
        owned = {kind[-1]: kwargs[f"owned_{kind[-1]}"] for kind in OWNED_KINDS}
        metrics = AutoscalerMetrics()
        autoscaler = Autoscaler(operator_settings, metrics)
        reconciler = Reconciler(
            operator_settings,
            cluster,
            prober,
            Indexes(modelserves, deployments, groups, pods, owned),
            statuses,
            ModelStore(operator_settings),
            autoscaler,
            RolloutTracker(
                cluster,
                RolloutMetrics(metrics.registry),
                operator_settings.rollout_deadline_seconds,
            ),
            ReconcileMetrics(metrics.registry),
        )
        memo.reconciler = reconciler
        memo.metrics_server = None
        if operator_settings.metrics_port:
            memo.metrics_server, _ = start_http_server(
                operator_settings.metrics_port,
                operator_settings.health_host,
                registry=metrics.registry,
            )
        gateway_namespace = operator_settings.gateway_namespace
        memo.tasks = [
            # Supervised: an unexpected error is logged and the loop started again, never
            # a silent end of all scaling (or of reading the gateways' reports).
            start_supervised("autoscaler", lambda: autoscaler.run(reconciler)),
            *(
                [
                    start_supervised(
                        "gateway load reports",
                        lambda: follow_leases(cluster, gateway_namespace, autoscaler.reports),
                    )
                ]
                if gateway_namespace
                else []
            ),
            asyncio.create_task(prober.run()),
            asyncio.create_task(reconciler.renew_all()),
            *(
                asyncio.create_task(statuses.drain(reconciler.refresh))
                for _ in range(operator_settings.status_writers)
            ),
            asyncio.create_task(reconciler.repairs.drain(reconciler.repair)),
        ]

    @kopf.on.cleanup(id="stop", registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        for task in memo.tasks:
            task.cancel()
        await asyncio.gather(*memo.tasks, return_exceptions=True)
        if memo.metrics_server is not None:
            memo.metrics_server.shutdown()
        await memo.http.aclose()
        await memo.reconciler.cluster.close()

    # --- indexes: what the status is computed from, kept up to date by watches ----------
    # Every handler is a coroutine: kopf runs plain functions in a thread pool, where
    # index updates would wait behind API calls while their events pile up in memory.

    @kopf.index(*MS, id="modelserves", registry=registry)
    async def modelserves(body: kopf.Body, namespace: str, name: str, **_: Any) -> Any:
        # Only what is read later: not managedFields, not kopf's annotations.
        meta = body.metadata
        kept = ("name", "namespace", "uid", "generation", "deletionTimestamp")
        ours = (MODEL_VERSION_ANNOTATION, ROLLOUT_ANNOTATION)
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in ours}
        return {
            (namespace, name): {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "metadata": {
                    **{key: meta[key] for key in kept if key in meta},
                    "annotations": annotations,
                },
                "spec": dict(body.spec),
                "status": dict(body.status),
            }
        }

    @kopf.index("apps", "v1", "deployments", id="deployments", labels=OURS, registry=registry)
    async def deployments(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> Any:
        return {(namespace, labels[NAME_LABEL]): DeploymentView.from_body(body)}

    @kopf.index(*LWS, id="groups", labels=OURS, registry=registry)
    async def groups(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> Any:
        return {(namespace, labels[NAME_LABEL]): DeploymentView.from_body(body)}

    @kopf.index("v1", "pods", id="pods", labels=OURS, registry=registry)
    async def pods(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> Any:
        return {(namespace, labels[NAME_LABEL]): PodView.from_body(body)}

    for kind in OWNED_KINDS:

        @kopf.index(*kind, id=f"owned_{kind[-1]}", labels=OURS, registry=registry)
        async def owned(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> Any:
            return {(namespace, labels[NAME_LABEL]): OwnedChild.from_body(body)}

    # --- the ModelServe itself ------------------------------------------------------------

    @kopf.on.resume(*MS, id="reconcile", registry=registry)
    @kopf.on.create(*MS, id="reconcile", registry=registry)
    @kopf.on.update(*MS, id="reconcile", field="spec", registry=registry)
    async def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        reconciler: Reconciler = memo.reconciler
        with reconciler.metrics.reconciling():
            ms = parse(body)
            if ms.spec.runtime is Runtime.EXTERNAL:
                reconciler.prober.track(ms)
            else:
                reconciler.prober.forget(ms.namespace, ms.name)
            async with reconciler.lock((ms.namespace, ms.name)):
                deployed = await reconciler.converge(reconciler.running(ms, body))
        reconciler.autoscaler.wake()
        if deployed and not body.status:
            # A new ModelServe: the event of its new Deployment marks it for its first
            # status. Marked from here, its status could be written before kopf's own record
            # that it handled the object, and at scale kopf would handle the creation twice.
            return
        reconciler.statuses.mark((ms.namespace, ms.name))

    @kopf.on.event(*MS, id="seen", registry=registry)
    async def seen(
        type: str | None, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any
    ) -> None:
        """Each event of the watch, deletions included: ModelServes by the phase their
        status shows (/metrics), and a ModelServe gone is forgotten: what the operator
        keeps of it in memory (its probe target, autoscaling state and series, last status,
        locks) is dropped. Its children go with their owner references.

        Deletions from the watch's DELETED event, not from a delete handler: kopf runs
        those only while the object holds kopf's finalizer (an optional one runs never, as
        ModelServes have none), and a finalizer would block every deletion while the
        operator is down. A deletion while the watch is down and relisted is not seen: what
        it leaves is dropped at the operator's next start."""
        deleted = type == "DELETED"
        memo.reconciler.metrics.phase(
            (namespace, name), None if deleted else body.status.get("phase")
        )
        if deleted:
            memo.reconciler.forget(namespace, name)
        elif rollouts.new_change(body):
            # A set_active of the model the spec names already (one it was rolled back
            # from): only the change's id is new, which no spec handler sees; the next
            # look at its status starts the new rollout.
            memo.reconciler.statuses.mark((namespace, name))

    # --- children: status follows them, drift is repaired ---------------------------------

    @kopf.on.event(
        "apps", "v1", "deployments", id="deployment-changed", labels=OURS, registry=registry
    )
    @kopf.on.event(*LWS, id="group-set-changed", labels=OURS, registry=registry)
    @kopf.on.event("v1", "pods", id="pod-changed", labels=OURS, registry=registry)
    async def workload_changed(
        type: str | None,
        body: kopf.Body,
        namespace: str,
        labels: kopf.Labels,
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        """A workload (Deployment or LeaderWorkerSet) or pod changed: repair the workload
        if it drifted, delete it if it is no longer wanted; mark the status."""
        reconciler: Reconciler = memo.reconciler
        parent = reconciler.owner(namespace, labels)
        if parent is None:
            return
        if body["kind"] in WORKLOADS:
            await _repair(reconciler, reconciler.running(parse(parent), parent), type, body)
        reconciler.statuses.mark((namespace, parent["metadata"]["name"]))
        reconciler.autoscaler.wake()

    for resource in CHILD_KINDS:

        @kopf.on.event(*resource, id=f"drift-{resource[-1]}", labels=OURS, registry=registry)
        async def child_changed(
            type: str | None,
            body: kopf.Body,
            namespace: str,
            labels: kopf.Labels,
            memo: kopf.Memo,
            **_: Any,
        ) -> None:
            reconciler: Reconciler = memo.reconciler
            parent = reconciler.owner(namespace, labels)
            if parent is not None:
                await _repair(reconciler, reconciler.running(parse(parent), parent), type, body)
                # A route made or gone makes the server Ready or not (`Reconciler.missing`).
                reconciler.statuses.mark((namespace, parent["metadata"]["name"]))

    return registry


async def _repair(
    reconciler: Reconciler, ms: ModelServe, event: str | None, body: kopf.Body
) -> None:
    """A child of `ms` changed: delete it if `ms` no longer wants it, put it back as we
    built it if someone else changed or deleted it. A child `ms` no longer wants (pruned,
    or `ms` is refused) is never put back: its deletion is the end of it. Refused for a
    moment (a conflict, a 5xx, a full quota), the whole ModelServe is converged again
    later (`Reconciler.repairs`): no other event may come for a child that is gone."""
    try:
        if (body["kind"], body.metadata.name) in reconciler.wanted(ms):
            if reconciler.drifted(event, body):
                built = {
                    (child["kind"], child["metadata"]["name"]): child
                    for child in build_children(ms, reconciler.settings, reconciler.replicas(ms))
                }
                child = built.get((body["kind"], body.metadata.name))
                if child is not None:
                    try:
                        await reconciler.apply(child)
                    except NameTaken:  # deleted, and another's made meanwhile: the
                        # whole server is converged again, and refused (NameTaken)
                        reconciler.repairs.mark((ms.namespace, ms.name))
        elif event != "DELETED" and controller_uid(body) == ms.uid:
            why = _deletion_reason(reconciler.refused(ms), "no longer wanted")
            await reconciler.delete(dict(body), f"{why} (seen {event or 'listed'})")
    except kopf.TemporaryError as error:
        reconciler.repair_later((ms.namespace, ms.name), error)


def _deletion_reason(refusal: Refusal | None, otherwise: str) -> str:
    """Why a child is deleted, for the log: its ModelServe's refusal, if refused."""
    return f"refused: {refusal.message}" if refusal else otherwise


def _api_key_reader(cluster: Cluster) -> Callable[[ModelServe], Awaitable[ApiKey]]:
    async def read(ms: ModelServe) -> ApiKey:
        external = ms.spec.external
        ref = external.api_key_secret_ref if external else None
        if external is None or ref is None:
            return ApiKey()
        try:
            secret = await cluster.read_secret(ms.namespace, ref.name)
        except ClusterError as error:
            return ApiKey(refused=f"the API-key Secret {ref.name} cannot be read: {error}")
        return api_key_for(secret, ms.namespace, ref.key, external.url)

    return read
