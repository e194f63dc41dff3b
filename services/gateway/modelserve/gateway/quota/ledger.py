"""Inference decisions in the gateway's process, from quota leased by the contract service.

The rules are the contract's own (`modelserve.contract.policy`): the principal's scopes
and limits come from POST /leases (`principals`), the allowlists and the scaling budget
are checked with `check_request`, and `inference_charges` says which counters a request
adds to. Every limited charge takes its hold (1 for a request rate, the reserved tokens
for a token counter) from this process's slice of that counter (`slices`), all of them
or none. A request that fits its slices costs no round trip; a slice short of a hold asks
the contract at once (one call for every short slice of the request, shared by every
request waiting on the same slice), and a grant short of what was waiting denies what
does not fit, as the contract would have (`policy.hit`). Slices are refilled in the
background before they run dry, renewed and given back by a housekeeping pass every
second, and given back at shutdown.

Limits stay exact across replicas: what a slice holds is reserved at the contract until
the usage records of the requests that took it settle it, or it is given back; a process
that dies holding a lease loses at most the lease's unused part, for its window.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

from modelserve.common.supervision import start_supervised
from modelserve.common.tokens import Claims
from modelserve.contract import policy
from modelserve.contract.policy import Action, CounterCharge, Principal, Reason, Resource
from modelserve.contract.tables import BIGINT_MAX
from modelserve.gateway.metrics import Children, GatewayMetrics
from modelserve.gateway.quota.client import (
    ContractUnavailable,
    GiveBack,
    LeaseAnswer,
    LeaseClient,
    PrincipalView,
    Want,
)
from modelserve.gateway.quota.principals import Entry, Views, changed, key_of, principal_body
from modelserve.gateway.quota.slices import (
    EXHAUSTED_SECONDS,
    Lease,
    Slice,
    hold_of,
)

logger = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 1.0
# Grants one request may wait for before it is denied (others kept taking what came).
MAX_ROUNDS = 8
# A grant that came too late in its window to be used: ask again this long after the
# window's end (the contract's clock may be a little behind the gateway's estimate).
WINDOW_SLACK_SECONDS = 0.05

Counter = tuple[str, str]  # (scope, metric)


@dataclasses.dataclass(frozen=True)
class Hold:
    """What a request took from one counter: `hold` from `lease` (None: an unlimited
    counter, counted from the usage record alone)."""

    scope: str
    metric: str
    lease: str | None
    hold: int


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    message: str
    team: str | None = None
    # Every counter the request adds to, with what it took (allowed requests only).
    holds: tuple[Hold, ...] = ()


def _denied(decision: policy.Decision) -> Decision:
    return Decision(allowed=False, reason=decision.reason.value, message=decision.message)


class QuotaLedger:
    """One per process: the principals' views, the slices and the housekeeping."""

    def __init__(
        self,
        client: LeaseClient,
        metrics: GatewayMetrics,
        *,
        refresh_seconds: float,
        default_tokens: int,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._decisions = Children(metrics.quota_decisions)
        # Each request as the rules read it is a copy of this with its fields: not
        # validated (they come from the gateway's own parsing), and a third of the cost
        # of building a model anew.
        self._blank = Resource()
        self._default_tokens = default_tokens
        self._views = Views(refresh_seconds)
        self._reads: dict[tuple[Any, ...], asyncio.Future[Entry]] = {}
        self._slices: dict[Counter, Slice] = {}
        self._asks: dict[Counter, asyncio.Future[None]] = {}
        # Leases to give back with the next call (any call carries them).
        self._give_backs: list[GiveBack] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = start_supervised("quota-housekeeping", self._housekeeping_loop)

    async def close(self) -> None:
        """Stop the housekeeping and give every slice back, in one call."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Grants under way join their slices first, to be given back with them.
        await asyncio.gather(*set(self._asks.values()), return_exceptions=True)
        give_back = [
            GiveBack(lease.id, lease.taken)
            for piece in self._slices.values()
            for lease in piece.leases
        ]
        give_back += self._drain_give_backs()
        self._slices.clear()
        if give_back:
            try:
                await self._call("shutdown", give_back=give_back)
            except ContractUnavailable as error:
                logger.warning(
                    "%d leases not given back at shutdown (the contract service charges"
                    " them when they expire): %s",
                    len(give_back),
                    error,
                )

    # --- a decision -------------------------------------------------------------------

    async def decide(
        self,
        claims: Claims,
        model: str,
        max_tokens: int | None,
        budget: int | None = None,
        *,
        prompts: int = 1,
        server_owner: str | None = None,
        server_team: str | None = None,
    ) -> Decision:
        """Allow (with the holds taken) or deny an inference; ContractUnavailable when it
        needs the contract service (a principal to read, a grant) and cannot have it.
        `prompts`: tokens are held for each prompt of a list; `server_owner` and
        `server_team` (the server's labels) let a contract exempt the caller's own
        servers from its rate limits."""
        key = (claims.sub, tuple(claims.teams), tuple(claims.roles))
        entry = self._views.fresh(key, time.monotonic())
        read = entry is None
        if entry is None:
            principal = Principal.model_construct(
                subject=claims.sub, teams=list(claims.teams), roles=list(claims.roles)
            )
            entry = await self._entry(principal)
        resource = self._blank.model_copy(
            update={
                "model": model,
                "max_tokens": max_tokens,
                "budget": budget,
                "prompts": prompts,
                "server_owner": server_owner,
                "server_team": server_team,
            }
        )
        decision, asked = await self._judge(entry.principal, entry.view, resource)
        path = "contract" if read or asked else "local"
        self._decisions(path, "allowed" if decision.allowed else "denied").inc()
        return decision

    async def _judge(
        self, principal: Principal, view: PrincipalView, resource: Resource
    ) -> tuple[Decision, bool]:
        scopes = list(view.scopes)
        if view.admin:
            # Not limited, but their tokens still count in their (and their team's)
            # token windows, from the usage record.
            holds = tuple(
                Hold(charge.scope, charge.metric, None, 0)
                for charge in policy.inference_charges(scopes, 0)
                if charge.metric.startswith("tokens/")
            )
            admin = Decision(True, Reason.ADMIN.value, "admins are not limited", view.team, holds)
            return admin, False
        for scope in scopes:
            denial = policy.check_request(Action.INFER, resource, scope)
            if denial is not None:
                return _denied(denial), False
        each = resource.max_tokens if resource.max_tokens is not None else self._default_tokens
        tokens = min(resource.prompts * each, BIGINT_MAX)
        exempt = policy.rate_exempt(principal, resource, scopes)
        charges = policy.inference_charges(scopes, tokens, rate_exempt=exempt)
        taken, asked = await self._take(principal, charges)
        if isinstance(taken, CounterCharge):
            return _denied(policy.hit(taken)), asked
        own = " (own server: no rate limit)" if exempt else ""
        message = f"inference on {resource.model} allowed{own}"
        return Decision(True, Reason.ALLOWED.value, message, view.team, taken), asked

    async def _entry(self, principal: Principal) -> Entry:
        """The principal's view read now (it is older than the refresh interval, or was
        never read); while the contract cannot be read, the last one until its deadline."""
        try:
            return await self._read(principal, "principal")
        except ContractUnavailable:
            fallback = self._views.fallback(key_of(principal), time.monotonic())
            if fallback is None:
                raise
            return fallback

    async def _read(self, principal: Principal, purpose: str) -> Entry:
        """One read of a principal at a time: concurrent requests share it."""
        key = key_of(principal)
        pending = self._reads.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read_now(principal, purpose))
            self._reads[key] = pending
            pending.add_done_callback(functools.partial(self._forget, self._reads, [key]))
        return await asyncio.shield(pending)

    async def _read_now(self, principal: Principal, purpose: str) -> Entry:
        give_back = self._drain_give_backs()
        sent = time.monotonic()
        try:
            answer = await self._call(
                purpose, principal=principal_body(principal), give_back=give_back
            )
        except ContractUnavailable:
            self._give_backs += give_back
            raise
        if answer.principal is None:
            raise ContractUnavailable("the contract service answered no principal")
        return self._store_view(principal, answer.principal, sent, answer.ttl)

    def _store_view(
        self, principal: Principal, view: PrincipalView, sent: float, ttl: float
    ) -> Entry:
        old = self._views.get(key_of(principal))
        entry = self._views.put(principal, view, sent, ttl)
        if old is not None and entry is not old:
            # Slices granted under other limits go back, to be granted anew under these.
            for counter in changed(old.view, view):
                self._retire_slice(counter)
        return entry

    # --- taking holds -----------------------------------------------------------------

    async def _take(
        self, principal: Principal, charges: Sequence[CounterCharge]
    ) -> tuple[tuple[Hold, ...] | CounterCharge, bool]:
        """Every limited charge's hold from its slice, or none: (the holds, or the charge
        that would go over its limit; whether the contract was asked)."""
        asked = False
        limited = [charge for charge in charges if charge.limit is not None]
        short: list[tuple[CounterCharge, Slice, int]] = []
        for _ in range(MAX_ROUNDS):
            now = time.monotonic()
            picks: list[tuple[Slice, Lease, int]] = []
            short = []
            for charge in limited:
                assert charge.limit is not None
                hold = hold_of(charge.metric, charge.reserved)
                if hold > charge.limit:
                    # More than the whole limit: never granted, denied as the contract
                    # would (asking would only pull the rest of the limit into this
                    # process, away from the other replicas).
                    return charge, asked
                piece = self._slice(charge.scope, charge.metric, charge.limit)
                lease = piece.lease_for(hold, now)
                if lease is None:
                    short.append((charge, piece, hold))
                else:
                    picks.append((piece, lease, hold))
            if not short:
                return self._taken(principal, charges, picks, now), asked
            for charge, piece, _ in short:
                if piece.exhausted(now):
                    return charge, asked
            asked = True
            await self._wait_for_grants(principal, short, now)
        return short[0][0], asked

    def _taken(
        self,
        principal: Principal,
        charges: Sequence[CounterCharge],
        picks: Sequence[tuple[Slice, Lease, int]],
        now: float,
    ) -> tuple[Hold, ...]:
        held: dict[Counter, Hold] = {}
        for piece, lease, hold in picks:
            piece.take(lease, hold, now)
            held[piece.key] = Hold(piece.scope, piece.metric, lease.id, hold)
            self._refill_ahead(principal, piece, hold, now)
        return tuple(
            held.get((charge.scope, charge.metric)) or Hold(charge.scope, charge.metric, None, 0)
            for charge in charges
        )

    def _slice(self, scope: str, metric: str, limit: int) -> Slice:
        piece = self._slices.get((scope, metric))
        if piece is not None and piece.limit != limit:
            self._retire_slice(piece.key)
            piece = None
        if piece is None:
            now = time.monotonic()
            piece = Slice(scope, metric, limit, last_take=now, tick_started=now)
            self._slices[scope, metric] = piece
        return piece

    def _retire_slice(self, counter: Counter) -> None:
        piece = self._slices.pop(counter, None)
        if piece is not None:
            self._give_backs += [GiveBack(lease.id, lease.taken) for lease in piece.leases]
            piece.leases = []

    async def _wait_for_grants(
        self, principal: Principal, short: Sequence[tuple[CounterCharge, Slice, int]], now: float
    ) -> None:
        """Until a grant came for every short slice: the one under way, or a new ask
        (one call for all of them) for what is waiting plus a refill; the leases too
        small for the hold go back with it."""
        edge = max(piece.next_window for _, piece, _ in short)
        if edge > now:  # a window ends in a moment: its grants would be of no use
            await asyncio.sleep(edge - now)
            now = time.monotonic()
        waits: list[asyncio.Future[None]] = []
        wants: list[tuple[Slice, int, int]] = []
        retired: list[GiveBack] = []
        for _, piece, hold in short:
            pending = self._asks.get(piece.key)
            if pending is not None:
                waits.append(pending)
                continue
            amount, demand = piece.short_ask(hold, now)
            wants.append((piece, amount, demand))
            retired += [GiveBack(lease.id, lease.taken) for lease in piece.retire(hold, now)]
        if wants:
            waits.append(self._ask(principal, wants, retired, "grant"))
        for _, piece, hold in short:
            piece.waiting += hold
        try:
            await asyncio.shield(asyncio.gather(*waits))
        finally:
            for _, piece, hold in short:
                piece.waiting -= hold

    def _refill_ahead(self, principal: Principal, piece: Slice, hold: int, now: float) -> None:
        """A background ask when the slice runs low at its take rate; nobody waits."""
        if piece.key in self._asks:
            return
        amount = piece.refill_wanted(hold, now)
        if amount:
            self._ask(principal, [(piece, amount, 0)], [], "refill")

    def _ask(
        self,
        principal: Principal,
        wants: list[tuple[Slice, int, int]],
        retired: list[GiveBack],
        purpose: str,
    ) -> asyncio.Future[None]:
        """A grant call for `wants` (slice, amount, demand), in the name of `principal`
        (whose scopes the counters are), registered as the call under way for each."""
        give_back = retired + self._drain_give_backs()
        task = asyncio.ensure_future(self._granted(principal, wants, give_back, purpose))
        keys = [piece.key for piece, _, _ in wants]
        for key in keys:
            self._asks[key] = task
        task.add_done_callback(functools.partial(self._forget, self._asks, keys))
        return task

    async def _granted(
        self,
        principal: Principal,
        wants: list[tuple[Slice, int, int]],
        give_back: list[GiveBack],
        purpose: str,
    ) -> None:
        """One POST /leases; each grant joins its slice. A grant short of its demand
        makes the slice deny what does not fit for a while; a refill short of its amount
        stops refills for as long. The principal's limits come with the answer: read
        again for free."""
        sent = time.monotonic()
        try:
            answer = await self._call(
                purpose,
                principal=principal_body(principal),
                want=[Want(piece.scope, piece.metric, amount) for piece, amount, _ in wants],
                give_back=give_back,
            )
        except ContractUnavailable:
            self._give_backs += give_back
            raise
        if answer.principal is not None:
            self._store_view(principal, answer.principal, sent, answer.ttl)
        if len(answer.leases) != len(wants):
            raise ContractUnavailable(
                f"the contract service answered {len(answer.leases)} leases for {len(wants)} asked"
            )
        now = time.monotonic()
        for (piece, amount, demand), grant in zip(wants, answer.leases, strict=True):
            window_end = sent + grant.window_ends_in
            lease = None
            if grant.lease is not None and grant.granted > 0:
                lease = Lease(grant.lease, grant.granted, window_end, sent, answer.ttl)
            if window_end <= now:
                # Granted in a window that ends before it could be used: back at once,
                # and the requests wait for the next window rather than be denied.
                piece.next_window = window_end + WINDOW_SLACK_SECONDS
                if lease is not None:
                    self._give_backs.append(GiveBack(lease.id, 0))
                continue
            if lease is not None:
                if self._slices.get(piece.key) is piece:
                    piece.leases.append(lease)
                else:  # retired while the call was under way
                    self._give_backs.append(GiveBack(lease.id, 0))
            if grant.granted < demand:
                piece.exhausted_until = min(now + EXHAUSTED_SECONDS, window_end)
            if grant.granted < amount:
                piece.refill_after = now + EXHAUSTED_SECONDS

    @staticmethod
    def _forget(pending: dict[Any, Any], keys: Sequence[Any], done: asyncio.Future[Any]) -> None:
        """A finished call out of the single-flight table; its failure retrieved (those
        waiting on it have it; a refill has nobody)."""
        for key in keys:
            if pending.get(key) is done:
                del pending[key]
        if not done.cancelled() and done.exception() is not None:
            logger.debug("a quota call failed: %s", done.exception())

    # --- housekeeping -----------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            now = time.monotonic()
            for piece in self._slices.values():
                piece.tick(now)
            await self.housekeep()

    async def housekeep(self) -> None:
        """One pass: renew what is due, give back what is idle, used up, past its
        deadline or its window (one call), and read active principals again."""
        now = time.monotonic()
        renew: list[tuple[Slice, Lease]] = []
        give_back: list[GiveBack] = []
        for key, piece in list(self._slices.items()):
            due_renew, due_back = piece.due(now)
            renew += [(piece, lease) for lease in due_renew]
            give_back += [GiveBack(lease.id, lease.taken) for lease in due_back]
            if (
                not piece.leases
                and piece.idle(now)
                and key not in self._asks
                and not piece.exhausted(now)
            ):
                del self._slices[key]
        give_back += self._drain_give_backs()
        reads = [self._read(entry.principal, "refresh") for entry in self._views.due(now)]
        self._views.forget_unused(now)
        if renew or give_back:
            sent = time.monotonic()
            try:
                answer = await self._call(
                    "housekeeping", renew=[lease.id for _, lease in renew], give_back=give_back
                )
            except ContractUnavailable as error:
                self._give_backs += give_back
                logger.warning("leases not renewed nor given back: %s", error)
            except asyncio.CancelledError:  # shutting down: close() gives them back
                self._give_backs += give_back
                raise
            else:
                for piece, lease in renew:
                    if lease.id in answer.renewed:
                        lease.renew(sent, answer.ttl)
                    else:  # charged at its expiry: the contract has it no more
                        piece.drop(lease)
        if reads:
            for failed in await asyncio.gather(*reads, return_exceptions=True):
                if isinstance(failed, ContractUnavailable):
                    logger.warning("a principal's limits not read again: %s", failed)
                elif isinstance(failed, BaseException):
                    raise failed

    # --- calls ------------------------------------------------------------------------

    def _drain_give_backs(self) -> list[GiveBack]:
        give_back, self._give_backs = self._give_backs, []
        return give_back

    async def _call(self, purpose: str, **parts: Any) -> LeaseAnswer:
        try:
            answer = await self._client.call(**parts)
        except ContractUnavailable:
            self._metrics.quota_calls.labels(purpose, "failed").inc()
            raise
        self._metrics.quota_calls.labels(purpose, "ok").inc()
        return answer

    # --- for tests and metrics ----------------------------------------------------------

    def held(self) -> dict[Counter, list[Lease]]:
        """The leases held now, per counter."""
        return {key: list(piece.leases) for key, piece in self._slices.items() if piece.leases}
