"""The rules, as pure functions: who is limited by what, and whether a request fits.

Limits nest. A user is held to their own contract, with the global defaults filling in
whatever it leaves unset. When they act for a team (the team named in the request, else
their first team), that team's contract, if it has one, holds as well: its allowlists
apply to every member and its totals, rates and budgets to all members together.
Admins are not limited. Counting what already runs and what was already spent is the
store's part; these functions say what to count and what the answer means.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from enum import StrEnum
from fnmatch import fnmatchcase

from pydantic import BaseModel, Field, model_validator

from modelserve.common.modelserve import MAX_NODES
from modelserve.common.tokens import ADMIN
from modelserve.contract.tables import BIGINT_MAX, INT_MAX, Limits, Period, Server


class Action(StrEnum):
    SERVE = "serve"  # create or change a server (ModelServe)
    SCALE = "scale"  # change only its replicas
    STOP = "stop"  # delete a server
    INFER = "infer"  # one inference request
    DOWNLOAD = "download"  # bring a model into the platform's store


class Reason(StrEnum):
    ALLOWED = "allowed"
    ADMIN = "admin"
    NOT_A_MEMBER = "team_not_member"
    NOT_OWNER = "not_owner"
    PLATFORM_NAMESPACE = "platform_namespace"
    MODEL = "model_not_allowed"
    RUNTIME = "runtime_not_allowed"
    IMAGE = "image_not_allowed"
    NAMESPACE = "namespace_not_allowed"
    REPLICAS = "max_replicas_exceeded"
    GPUS = "max_gpus_exceeded"
    SERVERS = "max_servers_exceeded"
    BUDGET = "max_budget_exceeded"
    REQUEST_RATE = "request_rate_exceeded"
    TOKEN_RATE = "token_rate_exceeded"
    TOKEN_BUDGET = "token_budget_exhausted"
    DOWNLOADS = "downloads_not_allowed"


class Principal(BaseModel):
    subject: str = Field(min_length=1)
    teams: list[str] = []
    roles: list[str] = []

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


class Resource(BaseModel):
    """What the action is about; each action reads the fields it needs."""

    namespace: str | None = None
    name: str | None = None
    model: str | None = None
    # The model record the weights come from (`s3://<bucket>/models/<model-id>/…`): the
    # model allowlists hold for it as well as for `model`, the served name.
    model_id: str | None = None
    # serve: the names of the ModelServe's LoRA adapters (spec.adapters) and the model
    # records they come from: clients name an adapter as a model, so the model
    # allowlists hold for each.
    adapters: list[str] = Field(default=[], max_length=64)
    adapter_ids: list[str] = Field(default=[], max_length=64)
    # serve: the served name of the model that scores its answers (spec.scaling.rewardModel):
    # every scaled request calls it, so the model allowlists hold for it too.
    reward_model: str | None = Field(default=None, max_length=253)
    runtime: str | None = None
    # serve: the model server's image when the spec overrides the operator's (spec.image).
    image: str | None = None
    replicas: int = Field(default=1, ge=0, le=INT_MAX)
    gpus: int = Field(
        default=0,
        ge=0,
        le=INT_MAX,
        description="per pod: the one pod of a replica, or each pod of its group",
    )
    # serve: a model spread over several nodes (spec.resources.nodes) runs each replica as
    # a group of this many pods, each with `gpus` GPUs; 1: one pod per replica.
    nodes: int = Field(default=1, ge=1, le=MAX_NODES, description="pods per replica")
    budget: int | None = Field(
        default=None, ge=0, le=INT_MAX, description="inference-time scaling budget"
    )
    max_tokens: int | None = Field(default=None, ge=0, le=BIGINT_MAX)
    prompts: int = Field(
        default=1, ge=1, le=INT_MAX, description="infer: prompts of a list, each holding max_tokens"
    )
    # infer: the server's owner and team labels, for `rate_limit_exempt_own_servers`.
    server_owner: str | None = None
    server_team: str | None = None
    team: str | None = None

    @model_validator(mode="after")
    def _replica_gpus_fit(self) -> Resource:
        # The ledger keeps a replica's GPUs in one integer column.
        if replica_gpus(self.gpus, self.nodes) > INT_MAX:
            raise ValueError(f"gpus x nodes (the GPUs of one replica) must be at most {INT_MAX}")
        return self


def replica_gpus(gpus: int, nodes: int = 1) -> int:
    """The GPUs one replica holds, which the GPU limits count: a replica of a model over
    several nodes is a group of `nodes` pods with `gpus` GPUs each, and every one of them
    is taken from the cluster while it runs."""
    return gpus * nodes


def wanted_gpus(resource: Resource) -> int:
    """The GPUs a server like `resource` holds at most: every replica's whole group."""
    return replica_gpus(resource.gpus, resource.nodes) * resource.replicas


def gpus_in_words(resource: Resource) -> str:
    """How a message names what a server of several nodes holds: its replicas and the
    group each is ("2 replicas of 2 nodes x 4 GPUs"); empty for one pod per replica, whose
    count says it all."""
    if resource.nodes == 1:
        return ""
    replicas = "1 replica" if resource.replicas == 1 else f"{resource.replicas} replicas"
    return f"{replicas} of {resource.nodes} nodes x {resource.gpus} GPUs"


class Decision(BaseModel):
    allowed: bool
    reason: Reason
    message: str
    # The limit that was hit (a number, or the allowed patterns).
    limit: int | list[str] | None = None
    team: str | None = None
    # For an allowed inference: the tokens held until its usage is recorded.
    reservation: uuid.UUID | None = None


def with_recorded(resource: Resource, server: Server | None) -> Resource:
    """`resource` completed with what the ledger recorded of its server."""
    if server is None:
        return resource
    update: dict[str, object] = {
        "model": resource.model or server.model,
        "runtime": resource.runtime or server.runtime,
    }
    if not resource.gpus:
        # The ledger records every GPU of a replica as one figure (a group's gpus x nodes).
        update.update(gpus=server.gpus, nodes=1)
    return resource.model_copy(update=update)


def allow(message: str, team: str | None = None) -> Decision:
    return Decision(allowed=True, reason=Reason.ALLOWED, message=message, team=team)


def deny(reason: Reason, message: str, limit: int | list[str] | None = None) -> Decision:
    return Decision(allowed=False, reason=reason, message=message, limit=limit)


@dataclasses.dataclass(frozen=True)
class Scope:
    """One party whose limits apply: the user, or the team they act for."""

    key: str  # user:alice, team:nlp (counters and locks are keyed by it)
    label: str  # user alice, team nlp (for messages)
    limits: Limits


def effective_limits(defaults: Limits, own: Limits | None) -> Limits:
    """The contract's own values where set, the defaults elsewhere."""
    if own is None:
        return defaults
    values = {
        name: getattr(own, name) if getattr(own, name) is not None else getattr(defaults, name)
        for name in Limits.model_fields
    }
    return Limits.model_validate(values)


def acting_team(principal: Principal, resource: Resource) -> str | Decision | None:
    """The team the request is for: the one named (if the principal belongs to it), else
    the principal's first team, else none."""
    if resource.team:
        if resource.team not in principal.teams:
            return deny(
                Reason.NOT_A_MEMBER,
                f"{principal.subject} is not a member of team {resource.team}",
            )
        return resource.team
    return principal.teams[0] if principal.teams else None


def scopes(
    principal: Principal,
    team: str | None,
    defaults: Limits,
    users: dict[str, Limits],
    teams: dict[str, Limits],
) -> list[Scope]:
    """`users`: each user's contract already merged with the defaults (effective_limits)."""
    user = Scope(
        f"user:{principal.subject}",
        f"user {principal.subject}",
        users.get(principal.subject, defaults),
    )
    team_limits = teams.get(team) if team else None
    if team is None or team_limits is None:
        return [user]
    return [user, Scope(f"team:{team}", f"team {team}", team_limits)]


def _outside(
    reason: Reason, refused: str, value: str | None, patterns: list[str] | None
) -> Decision | None:
    """A denial when `value` matches none of `patterns` (None: anything goes)."""
    if patterns is None or any(fnmatchcase(value or "", p) for p in patterns):
        return None
    return deny(reason, f"{refused} {value!r} (allowed: {', '.join(patterns)})", patterns)


def check_request(action: Action, resource: Resource, scope: Scope) -> Decision | None:
    """What one scope's contract says of the request alone, counting nothing; None: fine."""
    limits, who = scope.limits, scope.label
    model = _outside(Reason.MODEL, f"{who} may not use model", resource.model, limits.models)
    if model is not None:
        return model
    if resource.model_id is not None:
        weights = _outside(
            Reason.MODEL, f"{who} may not use model id", resource.model_id, limits.models
        )
        if weights is not None:
            return weights
    for adapter in resource.adapters:
        refused = _outside(Reason.MODEL, f"{who} may not use adapter", adapter, limits.models)
        if refused is not None:
            return refused
    for adapter_id in resource.adapter_ids:
        refused = _outside(
            Reason.MODEL, f"{who} may not use adapter model id", adapter_id, limits.models
        )
        if refused is not None:
            return refused
    if resource.reward_model is not None:
        refused = _outside(
            Reason.MODEL, f"{who} may not use reward model", resource.reward_model, limits.models
        )
        if refused is not None:
            return refused
    if action is Action.DOWNLOAD:
        # False denies; None (a team contract that leaves it unset) leaves it to the user,
        # whose merged limits always hold the default.
        if limits.downloads is False:
            return deny(Reason.DOWNLOADS, f"{who} may not download models")
        return None
    if action is Action.INFER:
        if (
            resource.budget is not None
            and limits.max_budget is not None
            and resource.budget > limits.max_budget
        ):
            return deny(
                Reason.BUDGET,
                f"a scaling budget of {resource.budget} is over the limit of "
                f"{limits.max_budget} per request for {who}",
                limits.max_budget,
            )
        return None
    if action in (Action.SERVE, Action.SCALE):
        namespace = _outside(
            Reason.NAMESPACE,
            f"{who} may not run servers in namespace",
            resource.namespace,
            limits.namespaces,
        )
        if namespace is not None:
            return namespace
        runtime = _outside(
            Reason.RUNTIME, f"{who} may not use runtime", resource.runtime, limits.runtimes
        )
        if action is Action.SERVE and runtime is not None:
            return runtime
        if action is Action.SERVE and resource.image is not None:
            image = _outside(
                Reason.IMAGE, f"{who} may not run image", resource.image, limits.images
            )
            if image is not None:
                return image
        if limits.max_replicas is not None and resource.replicas > limits.max_replicas:
            # A replica of a model over several nodes is its whole group, counted once.
            groups = f" (each a group of {resource.nodes} nodes)" if resource.nodes > 1 else ""
            return deny(
                Reason.REPLICAS,
                f"{resource.replicas} replicas{groups} is over the limit of "
                f"{limits.max_replicas} per server for {who}",
                limits.max_replicas,
            )
    return None


def check_totals(scope: Scope, servers: int, gpus: int, resource: Resource) -> Decision | None:
    """Whether one more server like `resource` fits next to the `servers` and `gpus` the
    scope already runs (the server itself not among them). A server's GPUs are every GPU
    of every pod of its replicas: `wanted_gpus`."""
    limits, who = scope.limits, scope.label
    if limits.max_servers is not None and servers + 1 > limits.max_servers:
        return deny(
            Reason.SERVERS,
            f"{who} already runs {servers} servers; the limit is {limits.max_servers}",
            limits.max_servers,
        )
    wanted = wanted_gpus(resource)
    if limits.max_gpus is not None and gpus + wanted > limits.max_gpus:
        words = gpus_in_words(resource)
        more = f"{wanted} more: {words}" if words else f"{wanted} more"
        return deny(
            Reason.GPUS,
            f"{who} would use {gpus + wanted} GPUs ({gpus} already, {more}); "
            f"the limit is {limits.max_gpus}",
            limits.max_gpus,
        )
    return None


@dataclasses.dataclass(frozen=True)
class CounterCharge:
    """One counter an inference request adds to; `hit` says what going over it means."""

    scope: str
    metric: str  # requests/minute, tokens/minute, tokens/day or tokens/month
    unit: str  # the window: minute, day or month
    used: int
    reserved: int
    limit: int | None
    label: str  # whose counter, for the message


def own_server(principal: Principal, resource: Resource) -> bool:
    """Whether the inference's server is the caller's: they own it, or it is one of
    their teams'."""
    if resource.server_owner is not None and resource.server_owner == principal.subject:
        return True
    return resource.server_team is not None and resource.server_team in principal.teams


def rate_exempt(principal: Principal, resource: Resource, scopes: list[Scope]) -> bool:
    """An inference on the caller's own server, under a contract (the user's or the
    acting team's) that exempts own servers from the per-minute rates."""
    return own_server(principal, resource) and any(
        scope.limits.rate_limit_exempt_own_servers for scope in scopes
    )


def inference_charges(
    scopes: list[Scope], tokens: int, *, rate_exempt: bool = False
) -> list[CounterCharge]:
    """One request counted and `tokens` reserved in each scope's rate and budget windows.

    The budget window of the scope's period (a day or a month) is counted whether limited
    or not, so that a budget set later starts from the truth (the other period's is not:
    a contract switched from day to month counts its month from then); per-minute
    windows only under a limit, since a new one is a minute away, and never for a
    `rate_exempt` request (its own server's load is the caller's business). Sorted by
    (scope, metric): the order in which every writer locks counter rows, so that
    concurrent decisions never deadlock.
    """
    charges: list[CounterCharge] = []
    for scope in sorted(scopes, key=lambda scope: scope.key):
        limits, key, who = scope.limits, scope.key, scope.label
        period = (limits.budget_period or Period.MONTH).value
        by_metric = {
            "requests/minute": ("minute", 1, 0, limits.requests_per_minute),
            f"tokens/{period}": (period, 0, tokens, limits.token_budget),
            "tokens/minute": ("minute", 0, tokens, limits.tokens_per_minute),
        }
        charges += [
            CounterCharge(key, metric, unit, used, reserved, limit, who)
            for metric, (unit, used, reserved, limit) in sorted(by_metric.items())
            if unit != "minute" or (limit is not None and not rate_exempt)
        ]
    return charges


def limited_counters(scopes: Sequence[Scope]) -> dict[tuple[str, str], CounterCharge]:
    """The counters of `scopes` that a limit holds, by (scope, metric): what may be leased.
    The others (the budget window of a scope without a budget) are counted from usage
    records only."""
    return {
        (charge.scope, charge.metric): charge
        for charge in inference_charges(list(scopes), 0)
        if charge.limit is not None
    }


def hit(charge: CounterCharge) -> Decision:
    """The denial for a charge that would take its counter over the limit."""
    who, limit, tokens = charge.label, charge.limit, charge.reserved
    if charge.metric == "requests/minute":
        return deny(
            Reason.REQUEST_RATE, f"{who} reached the limit of {limit} requests per minute", limit
        )
    if charge.metric == "tokens/minute":
        return deny(
            Reason.TOKEN_RATE,
            f"{tokens} more tokens would take {who} over the limit of {limit} tokens per minute",
            limit,
        )
    return deny(
        Reason.TOKEN_BUDGET,
        f"{tokens} more tokens would take {who} over the token budget of {limit} per {charge.unit}",
        limit,
    )
