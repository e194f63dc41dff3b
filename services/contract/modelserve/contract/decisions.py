"""One decision: the rules of `policy` over contracts held in memory, counts in the store.

Contracts are read at every decision from an in-memory copy (`ContractBook`) that each
replica reloads when PostgreSQL notifies a change, so the common case costs no query;
what must be counted (servers, rates, budgets) is counted in one database call.
"""

from __future__ import annotations

import uuid

from modelserve.common.settings import split
from modelserve.contract import policy
from modelserve.contract.policy import Action, Decision, Principal, Reason, Resource
from modelserve.contract.settings import ContractSettings
from modelserve.contract.store import Request, Store
from modelserve.contract.tables import BIGINT_MAX, Contract, Limits, Period, SubjectKind


def default_limits(settings: ContractSettings) -> Limits:
    def patterns(value: str) -> list[str] | None:
        items = split(value)
        return None if items == ["*"] else items

    return Limits(
        models=patterns(settings.default_models),
        runtimes=patterns(settings.default_runtimes),
        images=patterns(settings.default_images),
        namespaces=patterns(settings.default_namespaces),
        max_replicas=settings.default_max_replicas,
        max_gpus=settings.default_max_gpus,
        max_servers=settings.default_max_servers,
        max_budget=settings.default_max_budget,
        requests_per_minute=settings.default_requests_per_minute,
        tokens_per_minute=settings.default_tokens_per_minute,
        token_budget=settings.default_token_budget,
        budget_period=Period(settings.default_budget_period),
        downloads=settings.default_downloads,
    )


class ContractBook:
    """The contracts as last loaded: the global defaults, then one per user and team."""

    def __init__(self, defaults: Limits) -> None:
        self.defaults = defaults
        self.users: dict[str, Limits] = {}
        self.teams: dict[str, Limits] = {}

    def load(self, contracts: list[Contract]) -> None:
        self.users, self.teams = {}, {}
        for contract in contracts:
            self.put(contract)

    def put(self, contract: Contract) -> None:
        limits = Limits.model_validate(contract.model_dump(include=set(Limits.model_fields)))
        if contract.kind == SubjectKind.USER:
            # Merged with the defaults once here, not at every decision.
            self.users[contract.name] = policy.effective_limits(self.defaults, limits)
        else:
            self.teams[contract.name] = limits

    def remove(self, kind: SubjectKind, name: str) -> None:
        (self.users if kind == SubjectKind.USER else self.teams).pop(name, None)

    def scopes(self, principal: Principal, team: str | None) -> list[policy.Scope]:
        """The user's scope (their merged limits) and their team's, if it has a contract."""
        return policy.scopes(principal, team, self.defaults, self.users, self.teams)


class Decider:
    def __init__(self, settings: ContractSettings, store: Store, book: ContractBook) -> None:
        self.settings = settings
        self.store = store
        self.book = book

    async def reload(self, changed: str | None = None) -> None:
        """All contracts again, or (`changed` = "kind/name") the one that changed."""
        if changed is None:
            self.book.load(await self.store.contracts())
            return
        kind, _, name = changed.partition("/")
        contract = await self.store.contract(SubjectKind(kind), name)
        if contract is None:
            self.book.remove(SubjectKind(kind), name)
        else:
            self.book.put(contract)

    async def decide(
        self, principal: Principal, action: Action, resource: Resource, *, record: bool = True
    ) -> Decision:
        """Allow or deny `action` on `resource` for `principal`. An allowed serve is
        recorded in the server ledger as pending until the cluster has it (unless not
        `record`: a dry run, and every admission review); an allowed inference holds its
        tokens under the returned reservation (charged to the principal, team and model
        if nobody settles it in time). Serve, scale and stop of a recorded server
        are for its owner and admins only; in platform namespaces for admins only."""
        team = policy.acting_team(principal, resource)
        if isinstance(team, Decision):
            return team
        servers = (Action.SERVE, Action.SCALE, Action.STOP)
        platform = split(self.settings.platform_namespaces)
        if action in servers and not principal.is_admin and resource.namespace in platform:
            return policy.deny(
                Reason.PLATFORM_NAMESPACE,
                f"{resource.namespace} is a platform namespace: only platform admins "
                "serve, scale or stop servers there",
            )
        if action is Action.SCALE:
            resource = await self._with_recorded_server(resource)
        scopes = self.book.scopes(principal, team)
        if principal.is_admin:
            if action in (Action.SERVE, Action.SCALE):
                await self.store.claim_server(
                    scopes,
                    resource,
                    owner=principal.subject,
                    team=team,
                    record=record,
                    limited=False,
                    any_owner=True,
                )
            return Decision(
                allowed=True, reason=Reason.ADMIN, message="admins are not limited", team=team
            )
        for scope in scopes:
            denial = policy.check_request(action, resource, scope)
            if denial is not None:
                return denial
        if action in (Action.SERVE, Action.SCALE):
            denial = await self.store.claim_server(
                scopes, resource, owner=principal.subject, team=team, record=record
            )
            return denial or policy.allow(f"{action} {resource.name} allowed", team)
        if action is Action.STOP:
            return await self._stop(principal, resource, team)
        if action is Action.DOWNLOAD:
            # A download holds no server and no tokens: nothing to count or record.
            return policy.allow(f"download of {resource.model} allowed", team)
        each = (
            resource.max_tokens
            if resource.max_tokens is not None
            else self.settings.default_reserved_tokens
        )
        tokens = min(resource.prompts * each, BIGINT_MAX)
        exempt = policy.rate_exempt(principal, resource, scopes)
        reservation = uuid.uuid4()
        over = await self.store.charge(
            policy.inference_charges(scopes, tokens, rate_exempt=exempt),
            reservation,
            self.settings.reservation_seconds,
            keep=record,
            request=Request(principal.subject, team, resource.model or ""),
        )
        if over is not None:
            return policy.hit(over)
        own = " (own server: no rate limit)" if exempt else ""
        decision = policy.allow(f"inference on {resource.model} allowed{own}", team)
        # A dry run holds no tokens: there is nothing to settle.
        decision.reservation = reservation if record else None
        return decision

    async def _with_recorded_server(self, resource: Resource) -> Resource:
        """A scale names only the replicas: the rest is what the ledger knows of the server
        (unless the caller, the webhook, has read it already)."""
        if resource.model is not None or not (resource.namespace and resource.name):
            return resource
        return policy.with_recorded(
            resource, await self.store.server(resource.namespace, resource.name)
        )

    async def _stop(self, principal: Principal, resource: Resource, team: str | None) -> Decision:
        """Only the owner (or an admin, decided before) stops a recorded server."""
        if resource.namespace and resource.name:
            server = await self.store.server(resource.namespace, resource.name)
            if server is not None and server.owner != principal.subject:
                whose = f"belongs to {server.owner}" if server.owner else "has no owner"
                return policy.deny(
                    Reason.NOT_OWNER,
                    f"{resource.namespace}/{resource.name} {whose}: only its owner and "
                    f"platform admins may stop it, not {principal.subject}",
                )
        return policy.allow(f"stop {resource.name} allowed", team)
