"""Where a request for a model goes: pure logic over the ModelServes the gateway knows.

Discovery turns each ModelServe into a `Target` and keeps the `RouteTable` current, with
the endpoints of the servers' Services (`endpoints`); the proxy asks it for a model's
target or a server by id, then for an endpoint of that target (`choose`), and
/auth/verify for a server by id. Nothing here does I/O: the table is plain data that one
event loop reads and writes.

A server takes requests when its ModelServe is Ready and it has a ready endpoint: an
external server's URL, or a ready endpoint of a `vllm`/`llamacpp` server's Service.

Who may use a server: its owner (label `llm.modelserve.io/owner`), the members of its
team (`llm.modelserve.io/team`), everyone for a platform server (one in a namespace of
`GATEWAY_PLATFORM_NAMESPACES`, where only admins may serve), and admins and platform
services for every server. A server without an owner label outside the platform
namespaces was not made through the gateway (e.g. `kubectl apply` by an operator of the
platform), so it is left to admins and services. A model the caller may not use does
not exist for them: it answers as unknown, the way OpenAI's API does.

A served name is not unique: anyone may serve a model under any name. So that nobody
captures traffic meant for another's server, a name resolves in tiers (`Tier`): the
caller's own servers, then the platform's, then their teams' (so a team mate cannot take
over a name the platform serves), then (admins and services only) every other server.
Only the first tier with a server of that name is used, ready or not: requests balance
over the servers of that tier alone, and a tier whose servers are all down answers "not
ready" rather than falling through to the next. The gateway's
own lookups (a reward model a ModelServe names, `find`) see platform servers only.

A LoRA adapter of a server (spec.adapters) is a name of its own that resolves the same
way, to a view of that server whose served name is the adapter's (`Target.as_adapter`):
a request for it reaches the base model's servers, and is known by the adapter's name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from modelserve.common.modelserve import (
    OWNER_LABEL,
    TEAM_LABEL,
    Autoscaling,
    ModelServe,
    Runtime,
    Scaling,
)
from modelserve.common.rollouts import ModelVersion, Phase, Rollout, running_model
from modelserve.common.timestamps import epoch_seconds
from modelserve.common.tokens import Claims
from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.endpoints import EndpointTable

READY = "Ready"
DEPLOYING = "Deploying"
FAILED = "Failed"
SLEEPING = "Sleeping"
# The operator's condition on whether a waking model could be placed on a node.
SCHEDULED = "Scheduled"
# Seconds a client is told to wait for a server that exists but does not serve yet.
RETRY_AFTER_SECONDS = 5


class Tier(enum.IntEnum):
    """Which servers of a name a caller's request goes to: the lowest tier that has any."""

    OWN = 0  # the caller's own servers
    PLATFORM = 1  # servers in a platform namespace
    TEAM = 2  # servers of one of the caller's teams (a name neither they nor the platform serve)
    OTHER = 3  # anyone else's: admins and services only


@dataclasses.dataclass(frozen=True)
class Loading:
    """What the operator's status says about dynamic loading (all optional)."""

    desired_replicas: int | None = None  # status.desiredReplicas
    last_request: float = 0.0  # status.lastRequestTime, seconds since the epoch; 0: none
    drain_token: str | None = None  # status.drain.token: being put to sleep
    drain_reason: str = ""  # Idle | Evicted
    drain_message: str = ""
    # The Scheduled condition when it is False: why a waking model is not placed
    # (NoEvictableModel: it will not be; WaitingForEviction: once another one sleeps).
    unscheduled_reason: str | None = None
    unscheduled_message: str = ""
    # status.podDrain: replicas (pods) that go as the model scales down; they get no new
    # request, and the token is acknowledged in the load report.
    pod_drain_token: str | None = None
    pod_drain_pods: frozenset[str] = frozenset()


def loading_from_status(status: Mapping[str, Any]) -> Loading:
    """The dynamic-loading fields of a ModelServe's status."""
    desired = status.get("desiredReplicas")
    drain = status.get("drain") if isinstance(status.get("drain"), Mapping) else None
    token = str(drain.get("token") or "") if drain else ""
    scheduled = next(
        (
            c
            for c in status.get("conditions") or ()
            if isinstance(c, Mapping) and c.get("type") == SCHEDULED
        ),
        None,
    )
    unscheduled = scheduled is not None and scheduled.get("status") == "False"
    pod_drain = status.get("podDrain") if isinstance(status.get("podDrain"), Mapping) else None
    pod_token = str(pod_drain.get("token") or "") if pod_drain else ""
    pod_names = pod_drain.get("pods") if pod_drain else None
    return Loading(
        desired_replicas=desired if isinstance(desired, int) and desired >= 0 else None,
        last_request=epoch_seconds(status.get("lastRequestTime")) or 0.0,
        drain_token=token or None,
        drain_reason=str(drain.get("reason") or "") if drain and token else "",
        drain_message=str(drain.get("message") or "") if drain and token else "",
        unscheduled_reason=str(scheduled.get("reason") or "")
        if scheduled and unscheduled
        else None,
        unscheduled_message=(
            str(scheduled.get("message") or "") if scheduled and unscheduled else ""
        ),
        pod_drain_token=pod_token or None,
        pod_drain_pods=frozenset(str(p) for p in pod_names)
        if pod_token and isinstance(pod_names, list)
        else frozenset(),
    )


@dataclasses.dataclass(frozen=True)
class AdapterRoute:
    """A LoRA adapter of a server (spec.adapters), as requests name it."""

    name: str
    index: int  # its place in spec.adapters: llama-server's id for it in `lora`
    scale: float = 1.0  # its weight in a request for it (llama.cpp)


@dataclasses.dataclass(frozen=True)
class Target:
    """One server (ModelServe) and what the proxy needs to reach it."""

    server_id: str
    namespace: str
    name: str
    served_name: str
    # status.endpoint: an external server's OpenAI base URL, where requests go. A `vllm` or
    # `llamacpp` server's (its Service's cluster DNS name) is not used: requests go to
    # its Service's endpoints, from EndpointSlices.
    endpoint: str
    ready: bool
    phase: str
    message: str
    owner: str | None = None
    team: str | None = None
    created: int = 0  # the ModelServe's creation time, in seconds since the epoch
    # An external server's key: where it is, and (filled in by discovery) its value.
    api_key_secret: tuple[str, str] | None = None  # (Secret name, key) in `namespace`
    api_key: str | None = dataclasses.field(default=None, repr=False)
    runtime: Runtime = Runtime.EXTERNAL
    # Inference-time scaling defaults for requests to this model (spec.scaling).
    scaling: Scaling = dataclasses.field(default_factory=Scaling)
    # In a platform namespace (set by the route table, from its settings).
    platform: bool = False
    # Dynamic loading (spec.autoscaling): None for a server that runs spec.replicas.
    autoscaling: Autoscaling | None = None
    replicas: int = 1  # spec.replicas
    deleting: bool = False
    # What the operator wrote in the status (see `Loading`).
    loading: Loading = dataclasses.field(default_factory=Loading)
    # status.model (what every replica last ran, Ready) and status.rollout (its latest change).
    model: ModelVersion | None = None
    rollout: Rollout | None = None
    # spec.adapters: the LoRA adapters its servers load, each a model of its own name.
    adapters: tuple[AdapterRoute, ...] = ()
    # On the view of the server that a request for one of its adapters gets (`as_adapter`):
    # the model's served name (`served_name` is then the adapter's). None: the model itself.
    base_name: str | None = None

    def as_adapter(self, name: str) -> Target | None:
        """This server as a request for its adapter `name` sees it: the same server, its
        served name the adapter's (the name contracts, metrics and usage know the
        request by); None when it has no adapter of that name."""
        if not any(adapter.name == name for adapter in self.adapters):
            return None
        base = self.base_name or self.served_name
        return dataclasses.replace(self, served_name=name, base_name=base)

    @property
    def adapter(self) -> AdapterRoute | None:
        """The adapter a request for this view asks for; None for the model itself."""
        if self.base_name is None:
            return None
        return next((a for a in self.adapters if a.name == self.served_name), None)

    @property
    def rolling(self) -> bool:
        """Its model is being replaced (set-active), or put back after a failed change:
        a moment without a ready replica is a swap, not an outage (requests are held)."""
        rollout = self.rollout
        if rollout is None:
            return False
        return rollout.phase is Phase.PROGRESSING or (
            rollout.phase is Phase.ROLLED_BACK and self.phase == DEPLOYING
        )

    @property
    def autoscaled(self) -> bool:
        return self.autoscaling is not None

    @property
    def draining(self) -> bool:
        """Being put to sleep: it takes no new request (they are held)."""
        return self.loading.drain_token is not None

    @property
    def asleep(self) -> bool:
        """Put to sleep (status.desiredReplicas 0). The operator clears the drain as it
        scales to 0, and the EndpointSlice may show the pods terminating only later:
        endpoints it still lists are going away, and a request waits (and wakes it)."""
        return self.autoscaled and self.loading.desired_replicas == 0

    @property
    def fenced(self) -> bool:
        """No new request may reach its endpoints, whatever they say: being put to
        sleep, or asleep."""
        return self.draining or self.asleep

    def may_use(self, claims: Claims) -> bool:
        return self.tier(claims) is not None

    def tier(self, claims: Claims) -> Tier | None:
        """How close the server is to the caller; None: they may not use it."""
        if self.owner is not None and claims.sub == self.owner:
            return Tier.OWN
        if self.platform:
            return Tier.PLATFORM
        if self.team is not None and self.team in claims.teams:
            return Tier.TEAM
        if claims.is_admin or claims.is_service:
            return Tier.OTHER
        return None


@dataclasses.dataclass(frozen=True)
class Unknown:
    """No server the caller may use serves this model (HTTP 404)."""

    model: str


@dataclasses.dataclass(frozen=True)
class NotReady:
    """Servers exist for the model but none is ready (HTTP 503 with Retry-After)."""

    model: str
    message: str
    retry_after: int = RETRY_AFTER_SECONDS


Lookup = Target | Unknown | NotReady


def target_from_body(body: Mapping[str, Any]) -> Target:
    """The target of a ModelServe as the API server returns it (spec, labels, status).

    Raises ValueError (pydantic's ValidationError is one) for a spec it cannot read.
    """
    ms = ModelServe.from_body(body)
    meta = body["metadata"]
    labels = meta.get("labels") or {}
    status = body.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    endpoint = str(status.get("endpoint") or "").rstrip("/")
    deleting = bool(meta.get("deletionTimestamp"))
    external = ms.spec.runtime is Runtime.EXTERNAL
    secret = None
    if external and ms.spec.external is not None:
        ref = ms.spec.external.api_key_secret_ref
        secret = (ref.name, ref.key) if ref is not None else None
    message = "it is being deleted" if deleting else str(status.get("message") or "")
    return Target(
        server_id=ms.server_id,
        namespace=ms.namespace,
        name=ms.name,
        served_name=ms.served_name,
        endpoint=endpoint,
        # An external server is as ready as the operator's probe says. A server of pods
        # takes requests whenever one of its pods is ready, whatever its phase: a Degraded
        # server still has ready replicas, and so has one that is Deploying a new spec.
        ready=not deleting and (phase == READY and bool(endpoint) if external else True),
        phase=phase,
        message=message,
        owner=labels.get(OWNER_LABEL) or None,
        team=labels.get(TEAM_LABEL) or None,
        created=int(epoch_seconds(meta.get("creationTimestamp")) or 0),
        api_key_secret=secret,
        runtime=ms.spec.runtime,
        scaling=ms.spec.scaling,
        autoscaling=ms.spec.autoscaling,
        replicas=ms.spec.replicas,
        deleting=deleting,
        loading=loading_from_status(status),
        model=running_model(status),
        rollout=Rollout.from_status(status),
        adapters=tuple(
            AdapterRoute(adapter.name, index, adapter.scale)
            for index, adapter in enumerate(ms.spec.adapters)
        ),
    )


def least_loaded(candidates: Sequence[Target], load: Mapping[str, int], turn: int) -> Target:
    """The candidate with the fewest requests in flight; ties go round-robin by `turn`."""
    count = len(candidates)
    best = candidates[turn % count]
    best_load = load.get(best.server_id, 0)
    for offset in range(1, count):
        candidate = candidates[(turn + offset) % count]
        candidate_load = load.get(candidate.server_id, 0)
        if candidate_load < best_load:
            best, best_load = candidate, candidate_load
    return best


class Changes:
    """Tells who waits that the table changed: held requests (`wait`) and listeners
    (`listen`, called on the loop with each change). No polling: a held request wakes
    within the loop turn that saw its endpoint become ready."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        # When the last change was seen (time.monotonic): a held request that goes on
        # measures from here the gateway's own part of its wait.
        self.at = 0.0

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def notify(self) -> None:
        self.at = time.monotonic()
        event, self._event = self._event, asyncio.Event()
        event.set()
        for callback in self._listeners:
            callback()

    def wait(self) -> Coroutine[Any, Any, bool]:
        """Returns at the next change after this call (check what you wait for first:
        nothing can change between that check and this call, on one loop). The event is
        taken here, not when the coroutine first runs: `asyncio.wait_for` starts it a
        loop turn later, and a change in between must not be missed."""
        return self._event.wait()


class RouteTable:
    """Every known server by id, and by served name; the endpoints of their Services, and
    the requests in flight on each endpoint (`endpoints`).

    `platform_namespaces`: where the platform's own servers are (everyone may use them;
    the gateway resolves reward models among them alone)."""

    def __init__(self, platform_namespaces: Collection[str] = ()) -> None:
        self._platform = frozenset(platform_namespaces)
        self._servers: dict[str, Target] = {}
        self._by_name: dict[str, list[Target]] = {}
        self._turn = 0
        self.changes = Changes()
        self.endpoints = EndpointTable(on_change=self.changes.notify)
        # False until discovery has listed every watched namespace once: until then an
        # unknown model may just not be loaded yet (503 rather than 404).
        self.synced = False

    def __len__(self) -> int:
        return len(self._servers)

    # --- Kept current by discovery ---------------------------------------------------

    def _placed(self, target: Target) -> Target:
        """`target`, marked as a platform server when it is in a platform namespace."""
        platform = target.namespace in self._platform
        if target.platform is platform:
            return target
        return dataclasses.replace(target, platform=platform)

    def upsert(self, target: Target) -> None:
        target = self._placed(target)
        if self._servers.get(target.server_id) != target:
            self._servers[target.server_id] = target
            self._index()

    def remove(self, server_id: str) -> None:
        if self._servers.pop(server_id, None) is not None:
            self._index()

    def replace(self, targets: Iterable[Target], *, namespace: str | None = None) -> None:
        """All servers (of `namespace`, when given) are now exactly `targets`."""
        kept = {
            key: target
            for key, target in self._servers.items()
            if namespace is not None and target.namespace != namespace
        }
        placed = (self._placed(target) for target in targets)
        self._servers = {**kept, **{target.server_id: target for target in placed}}
        self._index()

    def _index(self) -> None:
        by_name: dict[str, list[Target]] = {}
        for target in sorted(self._servers.values(), key=lambda t: (t.namespace, t.name)):
            by_name.setdefault(target.served_name, []).append(target)
            # An adapter's name resolves as a served name does (tiers and all), to the
            # server that loads it.
            for adapter in target.adapters:
                view = target.as_adapter(adapter.name)
                if view is not None:
                    by_name.setdefault(adapter.name, []).append(view)
        self._by_name = by_name
        self.changes.notify()

    # --- Read by the routes ----------------------------------------------------------

    def server(self, server_id: str) -> Target | None:
        return self._servers.get(server_id)

    def servers(self) -> list[Target]:
        return list(self._servers.values())

    def lookup(self, model: str, claims: Claims) -> Lookup:
        """The target for the caller of `claims`, among the servers of `model` in the
        first tier that has any (servers they may not use are unknown). With none ready,
        an autoscaled one that may wake (its requests are held): see `holdable`."""
        return self._pick(model, self.nearest(model, claims), hold=True)

    def find(self, model: str, *, hold: bool = False) -> Lookup:
        """The target among the platform's servers of `model`, for the gateway's own
        calls (a reward model that a ModelServe names): never a tenant's server, which
        anyone may give any name. With `hold`, one that may wake as `lookup` does."""
        platform = [t for t in self._by_name.get(model, ()) if t.platform]
        return self._pick(model, platform, hold=hold)

    def nearest(self, model: str, claims: Claims) -> list[Target]:
        """The servers of `model` in the caller's first tier that has any."""
        tiers: dict[Tier, list[Target]] = {}
        for target in self._by_name.get(model, ()):
            tier = target.tier(claims)
            if tier is not None:
                tiers.setdefault(tier, []).append(target)
        return tiers[min(tiers)] if tiers else []

    def readiness(self, target: Target) -> Target | NotReady:
        """`target` when it takes requests or may wake (`holdable`), else why not (a
        server named by its id)."""
        if self.serving(target) or holdable(target):
            return target
        return self._not_ready(target.served_name, [target])

    def _pick(self, model: str, allowed: list[Target], *, hold: bool = False) -> Lookup:
        if not allowed:
            if not self.synced:
                return NotReady(model, "the gateway is still loading its routes", retry_after=1)
            return Unknown(model)
        ready = [t for t in allowed if self.serving(t)]
        if not ready:
            waking = [t for t in allowed if holdable(t)] if hold else []
            if waking:
                # The one the operator is already waking, if any (else the first).
                return max(waking, key=lambda t: (t.loading.desired_replicas or 0) > 0)
            return self._not_ready(model, allowed)
        if len(ready) == 1:
            return ready[0]
        self._turn += 1
        load = {t.server_id: self.endpoints.load(self.endpoints_of(t)) for t in ready}
        return least_loaded(ready, load, self._turn)

    def _not_ready(self, model: str, targets: list[Target]) -> NotReady:
        reasons = []
        for target in targets:
            where = f"{target.namespace}/{target.name}"
            if target.ready and target.phase == READY:
                reasons.append(f"{where} has no ready endpoint")
            else:
                detail = f": {target.message}" if target.message else ""
                reasons.append(f"{where} is {target.phase}{detail}")
        return NotReady(model, f"the model {model!r} is not ready yet ({'; '.join(reasons)})")

    def models(self, claims: Claims) -> list[Target]:
        """One target per served name the caller may use: the oldest server of the tier
        their requests go to."""
        found: dict[str, Target] = {}
        for name in self._by_name:
            nearest = self.nearest(name, claims)
            if nearest:
                found[name] = min(nearest, key=lambda t: t.created)
        return [found[name] for name in sorted(found)]

    # --- Endpoints, for the dispatcher -----------------------------------------------

    def endpoints_of(self, target: Target) -> tuple[Endpoint, ...]:
        """Where `target` answers: an external server's URL; else its Service's endpoints,
        those of pods the operator is letting go (`Loading.pod_drain_pods`) as not ready:
        they get no new request, and the requests they have go on."""
        if target.runtime is Runtime.EXTERNAL:
            return (Endpoint(target.endpoint),) if target.endpoint else ()
        found = self.endpoints.of(target.namespace, target.name)
        going = target.loading.pod_drain_pods
        if not going:
            return found
        return tuple(
            dataclasses.replace(e, ready=False) if e.ready and e.pod in going else e for e in found
        )

    def pod_loads(self, target: Target) -> dict[str, int]:
        """Requests in flight on each pod of `target` (the non-zero ones)."""
        if target.runtime is Runtime.EXTERNAL:
            return {}
        return self.endpoints.pods(self.endpoints.of(target.namespace, target.name))

    def serving(self, target: Target) -> bool:
        """Ready, with an endpoint that takes new requests, and neither asleep nor being
        put to sleep (`Target.fenced`)."""
        return (
            target.ready and not target.fenced and any(e.ready for e in self.endpoints_of(target))
        )

    def current(self, target: Target) -> Target:
        """The table's version of `target` now (a request keeps the one it was routed
        with, which may have changed since: a drain came); `target` itself once gone. A
        request for an adapter keeps it while the server loads it (a scaled request's
        calls name the model by the target's served name)."""
        current = self._servers.get(target.server_id)
        if current is None:
            return target
        if target.base_name is not None:
            return current.as_adapter(target.served_name) or current
        return current

    def choose(self, target: Target, exclude: Collection[str] = ()) -> Endpoint | None:
        """The endpoint of `target` for a request (see `balancing`), leaving out the URLs
        of `exclude`; None when it has no ready endpoint left."""
        return self.endpoints.choose(self.endpoints_of(self.current(target)), exclude)


def holdable(target: Target) -> bool:
    """Whether a request for `target` may wait for it rather than be refused: it is
    autoscaled (dynamic loading) or its model is being swapped (a set-active rollout),
    not being deleted, and its spec can work."""
    return (target.autoscaled or target.rolling) and not target.deleting and target.phase != FAILED
