"""The kopf handlers: parse, build, apply, report. Decisions live in builders and status.

Handlers are registered on a registry made by `build_registry(settings)`, so that
importing this module does nothing and tests can run an operator with their settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

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
        # Deployment generations as we last applied them: another generation is a hand edit.
        self.applied_generations: dict[tuple[str, str], int] = {}

    def apply(self, obj: dict[str, Any]) -> None:
        try:
            stored = self.cluster.apply(obj)
        except ClusterError as error:
            if error.gone:
                return  # deleted with its namespace: nothing left to reconcile
            if error.retryable:
                raise kopf.TemporaryError(str(error), delay=5) from error
            raise kopf.PermanentError(str(error)) from error
        if obj["kind"] == "Deployment":
            meta = stored["metadata"]
            self.applied_generations[(meta["namespace"], meta["name"])] = meta["generation"]

    def status(
        self,
        ms: ModelServe,
        deployments: kopf.Index[Any, Any],
        pods: kopf.Index[Any, Any],
        previous: dict[str, Any] | None,
    ) -> dict[str, Any]:
        key = (ms.namespace, ms.name)
        return compute_status(
            ms,
            self.settings,
            deployment=_one(deployments.get(key)),
            pods=list(pods.get(key, [])),
            probe=self.prober.results.get(key),
            previous=previous,
        )

    def report(self, body: kopf.Body | dict[str, Any], status: dict[str, Any]) -> None:
        """Patch the status if anything but timestamps changed; an Event on a new phase."""
        previous = dict(body.get("status") or {})
        if _comparable(previous) == _comparable(status):
            return
        meta = body["metadata"]
        self.cluster.patch_status(meta["namespace"], meta["name"], status)
        if previous.get("phase") != status["phase"]:
            kind = "Warning" if status["phase"] in ("Failed", "Degraded") else "Normal"
            kopf.event(body, type=kind, reason=status["phase"], message=status["message"])


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
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(id="start", registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.execution.max_workers = operator_settings.api_threads
        settings.posting.level = logging.INFO
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
        return {
            (namespace, name): {
                "metadata": dict(body.metadata),
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
        for child in build_children(ms, reconciler.settings):
            reconciler.apply(child)
        if ms.spec.runtime is Runtime.EXTERNAL and body.status.get("phase"):
            return  # the prober reports; until its first result, the last status stands
        reconciler.report(body, reconciler.status(ms, deployments, pods, dict(body.status)))

    @kopf.on.delete(*MS, id="forget", optional=True, registry=registry)
    def forget(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
        # Children go with the owner references; only in-memory state is ours to drop.
        memo.reconciler.prober.forget(namespace, name)

    # --- children: status follows them, drift is repaired ---------------------------------

    def owner(namespace: str, labels: kopf.Labels, index: kopf.Index[Any, Any]) -> Any:
        """The child's ModelServe as last seen, unless it is gone or going."""
        parent = _one(index.get((namespace, labels.get(NAME_LABEL, ""))))
        return None if parent is None or parent["metadata"].get("deletionTimestamp") else parent

    @kopf.on.event(
        "apps", "v1", "deployments", id="deployment-changed", labels=OURS, registry=registry
    )
    def deployment_changed(
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
        reconciler: Reconciler = memo.reconciler
        parent = owner(namespace, labels, modelserves)
        if parent is None:
            return
        ms = parse(parent)
        applied = reconciler.applied_generations.get((namespace, body.metadata.name))
        if type == "DELETED" or (type and applied and body.metadata.get("generation") != applied):
            reconciler.apply(build_deployment(ms, reconciler.settings))
        reconciler.report(parent, reconciler.status(ms, deployments, pods, parent.get("status")))

    @kopf.on.event("v1", "pods", id="pod-changed", labels=OURS, registry=registry)
    def pod_changed(
        namespace: str,
        labels: kopf.Labels,
        memo: kopf.Memo,
        modelserves: kopf.Index[Any, Any],
        deployments: kopf.Index[Any, Any],
        pods: kopf.Index[Any, Any],
        **_: Any,
    ) -> None:
        reconciler: Reconciler = memo.reconciler
        parent = owner(namespace, labels, modelserves)
        if parent is not None:
            status = reconciler.status(parse(parent), deployments, pods, parent.get("status"))
            reconciler.report(parent, status)

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
            parent = owner(namespace, labels, modelserves)
            if type is None or parent is None:
                return  # the initial listing is the resume handler's business
            reconciler: Reconciler = memo.reconciler
            wanted = {
                (child["kind"], child["metadata"]["name"]): child
                for child in build_children(parse(parent), reconciler.settings)
            }
            child = wanted.get((body["kind"], body.metadata.name))
            if child is not None:  # a no-op when nothing drifted: the apply changes nothing
                reconciler.apply(child)

    return registry


def _api_key_reader(cluster: Cluster) -> Any:
    async def read(ms: ModelServe) -> str | None:
        ref = ms.spec.external.api_key_secret_ref if ms.spec.external else None
        if ref is None:
            return None
        return await asyncio.to_thread(cluster.secret_value, ms.namespace, ref.name, ref.key)

    return read


def _probe_reporter(memo: kopf.Memo) -> Any:
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
