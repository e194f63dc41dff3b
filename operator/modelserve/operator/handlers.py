"""The kopf handlers: parse, build, apply, report. Decisions live in builders and status.

Handlers are registered on a registry made by `build_registry(settings)`, so that
importing this module does nothing and tests can run an operator with their settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import kopf
from pydantic import ValidationError

from modelserve.operator.builders import (
    MANAGED_BY,
    NAME_LABEL,
    OPERATOR,
    build_children,
    build_deployment,
)
from modelserve.operator.cluster import Cluster, ClusterError, load_api_client
from modelserve.operator.probing import ExternalProber
from modelserve.operator.settings import OperatorSettings
from modelserve.operator.spec import GROUP, PLURAL, VERSION, ModelServe, Runtime
from modelserve.operator.status import DeploymentView, PodView, ProbeResult, compute_status

MS = (GROUP, VERSION, PLURAL)
CHILD_KINDS: tuple[tuple[str, ...], ...] = (
    ("v1", "services"),
    ("v1", "secrets"),
    ("v1", "persistentvolumeclaims"),
    ("traefik.io", "v1alpha1", "ingressroutes"),
    ("traefik.io", "v1alpha1", "middlewares"),
)
OURS: dict[str, Any] = {MANAGED_BY: OPERATOR, NAME_LABEL: kopf.PRESENT}


def parse(body: kopf.Body) -> ModelServe:
    try:
        return ModelServe.from_body(body)
    except ValidationError as error:
        # The CRD refuses most bad specs; what passes it and still fails here never will work.
        raise kopf.PermanentError(f"invalid spec: {error}") from error


def _one(store: kopf.Store[Any] | None) -> Any:
    return next(iter(store), None) if store else None


class Reconciler:
    """What the handlers share: settings, the cluster, the prober, the last applied state."""

    def __init__(self, settings: OperatorSettings, cluster: Cluster, prober: ExternalProber):
        self.settings = settings
        self.cluster = cluster
        self.prober = prober
        # Each child as we last applied it, keyed by (namespace, owner, kind, name): a child
        # seen in another version was changed by someone else.
        self.applied: dict[tuple[str, str, str, str], str] = {}
        # The status last written per ModelServe: the watch's copy lags our own writes, and
        # comparing with it would write the same status again on every child event.
        self.reported: dict[tuple[str, str], Any] = {}
        # Events of one ModelServe's children are handled in parallel: the status is computed
        # and written under a lock per ModelServe, from the indexes as they are at that moment,
        # so that a status computed from older data is never written after a newer one.
        self._status_locks: dict[tuple[str, str], threading.Lock] = {}

    def apply(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one child; returns it as stored (None if its namespace is going away)."""
        try:
            stored = self.cluster.apply(obj)
        except ClusterError as error:
            if error.gone:
                return None  # deleted with its namespace: nothing left to reconcile
            if error.retryable:
                raise kopf.TemporaryError(str(error), delay=5) from error
            raise kopf.PermanentError(str(error)) from error
        self.applied[_child_key(stored)] = _version(stored)
        return stored

    def drifted(self, event: str | None, body: kopf.Body) -> bool:
        """Whether someone else deleted or changed a child since we last applied it.

        The initial listing (no event type) is left to the resume handler, which applies
        every child anyway; our own writes come back as events with the version we recorded.
        """
        if event == "DELETED":
            return True
        applied = self.applied.get(_child_key(body))
        return event is not None and applied is not None and applied != _version(body)

    def forget(self, namespace: str, name: str) -> None:
        self.prober.forget(namespace, name)
        self.reported.pop((namespace, name), None)
        self._status_locks.pop((namespace, name), None)
        for key in [key for key in self.applied if key[:2] == (namespace, name)]:
            del self.applied[key]

    def refresh(
        self,
        ms: ModelServe,
        body: kopf.Body | dict[str, Any],
        deployments: kopf.Index[Any, Any],
        pods: kopf.Index[Any, Any],
        applied: DeploymentView | None = None,
    ) -> None:
        """Recompute the status of `ms` (whose object is `body`) and write it if it changed.

        `applied`, a Deployment just written, stands in until the index has the Deployment;
        then the index wins: events may have updated it after the apply returned, and a
        status from the older copy would be written last.
        """
        key = (ms.namespace, ms.name)
        with self._status_locks.setdefault(key, threading.Lock()):
            status = compute_status(
                ms,
                self.settings,
                deployment=_one(deployments.get(key)) or applied,
                pods=list(pods.get(key, [])),
                probe=self.prober.results.get(key),
                previous=dict(body.get("status") or {}),
            )
            self.report(body, status)

    def report(self, body: kopf.Body | dict[str, Any], status: dict[str, Any]) -> None:
        """Write the status if anything but timestamps changed; an Event on a new phase."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        previous = self.reported.get(key) or _comparable(dict(body.get("status") or {}))
        if previous == _comparable(status):
            return
        if status["observedGeneration"] < previous.get("observedGeneration", 0):
            return  # computed from a copy of the ModelServe older than the last status written
        self.cluster.patch_status(meta["namespace"], meta["name"], status)
        self.reported[key] = _comparable(status)
        if previous.get("phase") != status["phase"]:
            kind = "Warning" if status["phase"] in ("Failed", "Degraded") else "Normal"
            kopf.event(body, type=kind, reason=status["phase"], message=status["message"])


def _child_key(obj: Any) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (meta["namespace"], meta["labels"][NAME_LABEL], obj["kind"], meta["name"])


def _version(obj: Any) -> str:
    """A Deployment's generation (its status changes all the time), else resourceVersion."""
    meta = obj["metadata"]
    return str(meta["generation"]) if obj["kind"] == "Deployment" else str(meta["resourceVersion"])


def _comparable(status: dict[str, Any]) -> Any:
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
    ]
    return {**{k: v for k, v in status.items() if k not in ("conditions", "kopf")}, "c": conditions}


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    operator_settings = settings

    @kopf.on.login(id="login", registry=registry)
    async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
        """kopf's own session, with a bounded connection pool.

        kopf's default pool is unbounded: with thousands of objects changing at once it
        opened hundreds of TLS connections, each with its buffers, and that was most of
        the operator's memory. Each watch holds one connection, hence the headroom.
        """
        info = kopf.login_via_client(**kwargs)
        if info is None:
            return None
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=operator_settings.watch_connections, ssl=info.as_ssl_context()
            ),
            headers=info.as_http_headers(),
            auth=info.as_aiohttp_basic_auth(),
        )
        return kopf.AiohttpSession(
            aiohttp_session=session,
            server=info.server,
            default_namespace=info.default_namespace,
            expiration=info.expiration,
        )

    @kopf.on.startup(id="start", registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.execution.max_workers = operator_settings.api_threads
        # kopf keeps a worker per object until it has been idle this long (5 s by default);
        # with thousands of children changing at once, idle workers are most of the memory.
        settings.batching.idle_timeout = 0.5
        # Events are ours (a phase change each), not one per log line of every handler.
        settings.posting.loggers = False
        # Progress in annotations: the CRD's status schema is ours, kopf's state is not in it.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        memo.http = httpx.AsyncClient(timeout=operator_settings.external_probe_timeout)
        cluster = await asyncio.to_thread(
            Cluster, load_api_client(operator_settings.api_threads + 4)
        )
        prober = ExternalProber(
            memo.http,
            operator_settings.external_probe_interval,
            _api_key_reader(cluster),
            _probe_reporter(memo),
        )
        memo.reconciler = Reconciler(operator_settings, cluster, prober)
        memo.prober_task = asyncio.create_task(prober.run())

    @kopf.on.cleanup(id="stop", registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        memo.prober_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await memo.prober_task
        await memo.http.aclose()
        memo.reconciler.cluster.close()

    # --- indexes: what the status is computed from, kept up to date by watches ----------

    @kopf.index(*MS, id="modelserves", registry=registry)
    def modelserves(body: kopf.Body, namespace: str, name: str, **_: Any) -> Any:
        # Only what the child handlers read: not managedFields, not kopf's annotations.
        meta = body.metadata
        kept = ("name", "namespace", "uid", "generation", "deletionTimestamp")
        return {
            (namespace, name): {
                "metadata": {key: meta[key] for key in kept if key in meta},
                "spec": dict(body.spec),
                "status": dict(body.status),
            }
        }

    @kopf.index("apps", "v1", "deployments", id="deployments", labels=OURS, registry=registry)
    def deployments(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> Any:
        return {(namespace, labels[NAME_LABEL]): DeploymentView.from_body(body)}

    @kopf.index("v1", "pods", id="pods", labels=OURS, registry=registry)
    def pods(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> Any:
        return {(namespace, labels[NAME_LABEL]): PodView.from_body(body)}

    # --- the ModelServe itself ------------------------------------------------------------

    @kopf.on.resume(*MS, id="reconcile", registry=registry)
    @kopf.on.create(*MS, id="reconcile", registry=registry)
    @kopf.on.update(*MS, id="reconcile", field="spec", registry=registry)
    def reconcile(
        body: kopf.Body,
        memo: kopf.Memo,
        deployments: kopf.Index[Any, Any],
        pods: kopf.Index[Any, Any],
        **_: Any,
    ) -> None:
        reconciler: Reconciler = memo.reconciler
        ms = parse(body)
        if ms.spec.runtime is Runtime.EXTERNAL:
            reconciler.prober.track(ms)
        stored = [reconciler.apply(child) for child in build_children(ms, reconciler.settings)]
        if ms.spec.runtime is Runtime.EXTERNAL and body.status.get("phase"):
            return  # the prober reports; until its first result, the last status stands
        applied = next(
            (DeploymentView.from_body(o) for o in stored if o and o["kind"] == "Deployment"), None
        )
        if applied is not None and not body.status:
            # A new ModelServe: the event of its new Deployment reports the first status. A
            # write from here would reach kopf before kopf's own record that it handled the
            # object, and at scale kopf would handle the creation a second time.
            return
        reconciler.refresh(ms, body, deployments, pods, applied)

    @kopf.on.delete(*MS, id="forget", optional=True, registry=registry)
    def forget(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
        # Children go with the owner references; only in-memory state is ours to drop.
        memo.reconciler.forget(namespace, name)

    # --- children: status follows them, drift is repaired ---------------------------------

    def owner(namespace: str, labels: kopf.Labels, index: kopf.Index[Any, Any]) -> Any:
        """The child's ModelServe as last seen, unless it is gone or going."""
        parent = _one(index.get((namespace, labels.get(NAME_LABEL, ""))))
        return None if parent is None or parent["metadata"].get("deletionTimestamp") else parent

    @kopf.on.event(
        "apps", "v1", "deployments", id="deployment-changed", labels=OURS, registry=registry
    )
    @kopf.on.event("v1", "pods", id="pod-changed", labels=OURS, registry=registry)
    def workload_changed(
        type: str | None,
        body: kopf.Body,
        namespace: str,
        labels: kopf.Labels,
        memo: kopf.Memo,
        modelserves: kopf.Index[Any, Any],
        deployments: kopf.Index[Any, Any],
        pods: kopf.Index[Any, Any],
        **_: Any,
    ) -> None:
        """A Deployment or pod changed: repair the Deployment if it drifted, then the status."""
        reconciler: Reconciler = memo.reconciler
        parent = owner(namespace, labels, modelserves)
        if parent is None:
            return
        ms = parse(parent)
        if body["kind"] == "Deployment" and reconciler.drifted(type, body):
            reconciler.apply(build_deployment(ms, reconciler.settings))
        reconciler.refresh(ms, parent, deployments, pods)

    for resource in CHILD_KINDS:

        @kopf.on.event(*resource, id=f"drift-{resource[-1]}", labels=OURS, registry=registry)
        def child_changed(
            type: str | None,
            body: kopf.Body,
            namespace: str,
            labels: kopf.Labels,
            memo: kopf.Memo,
            modelserves: kopf.Index[Any, Any],
            **_: Any,
        ) -> None:
            reconciler: Reconciler = memo.reconciler
            parent = owner(namespace, labels, modelserves)
            if parent is None or not reconciler.drifted(type, body):
                return
            wanted = {
                (child["kind"], child["metadata"]["name"]): child
                for child in build_children(parse(parent), reconciler.settings)
            }
            child = wanted.get((body["kind"], body.metadata.name))
            if child is not None:
                reconciler.apply(child)

    return registry


def _api_key_reader(cluster: Cluster) -> Callable[[ModelServe], Awaitable[str | None]]:
    async def read(ms: ModelServe) -> str | None:
        ref = ms.spec.external.api_key_secret_ref if ms.spec.external else None
        if ref is None:
            return None
        return await asyncio.to_thread(cluster.secret_value, ms.namespace, ref.name, ref.key)

    return read


def _probe_reporter(memo: kopf.Memo) -> Callable[[ModelServe, ProbeResult], Awaitable[None]]:
    async def report(ms: ModelServe, result: ProbeResult) -> None:
        reconciler: Reconciler = memo.reconciler
        status = compute_status(ms, reconciler.settings, deployment=None, pods=[], probe=result)
        await asyncio.to_thread(reconciler.cluster.patch_status, ms.namespace, ms.name, status)
        owner: Any = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelServe",
            "metadata": {"namespace": ms.namespace, "name": ms.name, "uid": ms.uid},
        }
        kopf.event(
            owner,
            type="Normal" if result.ok else "Warning",
            reason=status["phase"],
            message=result.message,
        )

    return report
