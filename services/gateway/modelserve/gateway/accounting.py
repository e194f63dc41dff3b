"""Inference accounting with the contract service: may this request run, and what it used.

Before forwarding, the quota ledger (`quota.ledger`, `Accounting.ledger`) decides in this
process, from the principal's limits and the slices of their counters that the contract
service leased to this replica: no round trip in the steady state. After the answer, `settle`
hands the tokens really used, with what the request took from each counter (its holds),
to the usage outbox (`usage_outbox`), which keeps them in PostgreSQL until the contract's
POST /usage/batch has them: that settles the holds in the leases. A request never waits
for its usage to be delivered, and an outage of the contract service or a crash of the
gateway loses none.

The gateway acts as a service here: a service token of its own, naming the user it acts
for in `principal`. It fails closed: a decision that needs the contract service and
cannot have it refuses the request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from modelserve.common.tokens import Claims
from modelserve.gateway.contracts import principal_of
from modelserve.gateway.quota.client import ContractUnavailable as ContractUnavailable
from modelserve.gateway.quota.client import ServiceToken as ServiceToken
from modelserve.gateway.quota.ledger import Decision as Decision
from modelserve.gateway.quota.ledger import QuotaLedger
from modelserve.gateway.upstream import UpstreamClient, UpstreamError
from modelserve.gateway.usage_outbox import SendBatch, UsageOutbox

# Records in one POST /usage/batch (the contract service takes 1 to 1000).
BATCH_LIMIT = 1000
# Answers of POST /usage/batch that the records are sent one by one after: a contract
# service without the route (older), or a batch it refuses as a whole (one bad record).
_ONE_BY_ONE = frozenset({404, 405, 413, 422})
# Records sent one by one at once in that case.
ONE_BY_ONE_CONCURRENCY = 16


def usage_record(
    claims: Claims,
    model: str,
    decision: Decision | None,
    prompt_tokens: int,
    completion_tokens: int,
    usage_id: uuid.UUID,
) -> dict[str, Any]:
    """The usage record of one request; `id` lets the contract count it once, `counters`
    say what the request took from each counter (and from which lease)."""
    return {
        "id": str(usage_id),
        "principal": principal_of(claims),
        "team": decision.team if decision else None,
        "model": model,
        "reservation": None,
        "counters": [
            {"scope": hold.scope, "metric": hold.metric, "lease": hold.lease, "hold": hold.hold}
            for hold in (decision.holds if decision else ())
        ],
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }


class Accounting:
    """The proxy's side of the contract service (`contracts` is the management routes')."""

    def __init__(self, ledger: QuotaLedger, outbox: UsageOutbox) -> None:
        # Decides before forwarding (`QuotaLedger.decide`); ContractUnavailable when the
        # decision needs the contract service (a principal to read, a grant) and it
        # does not answer.
        self.ledger = ledger
        self._outbox = outbox

    def settle(
        self,
        claims: Claims,
        model: str,
        decision: Decision | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Put what a request used in the outbox. Always, even nothing, and even for a
        failed or abandoned request: its holds are settled now, rather than counted in
        full when their lease is given back or expires. Never waits."""
        usage_id = uuid.uuid4()
        self._outbox.add(
            usage_id,
            usage_record(claims, model, decision, prompt_tokens, completion_tokens, usage_id),
        )


def usage_sender(url: str, http: UpstreamClient, token: ServiceToken) -> SendBatch:
    """How the outbox delivers records: POST /usage/batch, up to BATCH_LIMIT a call (one
    transaction at the contract: all recorded or none); one by one to POST /usage when the
    contract service has no batch route or refuses a batch whole. (status, answer) per
    record, status 0 when the service cannot be reached."""
    batch_url = f"{url.rstrip('/')}/usage/batch"
    one_url = f"{url.rstrip('/')}/usage"
    gate = asyncio.Semaphore(ONE_BY_ONE_CONCURRENCY)

    async def post(target: str, body: bytes) -> tuple[int, bytes]:
        try:
            return await http.post(target, body, token.headers())
        except UpstreamError as error:
            return 0, f"the contract service is {error.kind}: {error.detail}".encode()

    async def one(record: bytes) -> tuple[int, bytes]:
        async with gate:
            return await post(one_url, record)

    async def batch(records: Sequence[bytes]) -> list[tuple[int, bytes]]:
        status, answer = await post(batch_url, b'{"records":[' + b",".join(records) + b"]}")
        if status == 200:  # one transaction: every record was recorded
            return [(200, answer)] * len(records)
        if status in _ONE_BY_ONE:
            return list(await asyncio.gather(*(one(record) for record in records)))
        return [(status, answer)] * len(records)

    async def send(records: Sequence[bytes]) -> list[tuple[int, bytes]]:
        answers: list[tuple[int, bytes]] = []
        for start in range(0, len(records), BATCH_LIMIT):
            answers += await batch(records[start : start + BATCH_LIMIT])
        return answers

    return send
