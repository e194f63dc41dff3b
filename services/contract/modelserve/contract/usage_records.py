"""Usage records, as the gateway sends them after each inference: one at a time (POST
/usage) or in batches (POST /usage/batch), in one of two shapes.

- The shape of POST /decide: `reservation` names the decision's reservation, settled with
  the tokens really used; when it is gone, the tokens count in the principal's token
  windows (from the replica's in-memory contracts, as the decision counted them).
- The leased shape: `counters` lists every counter the request was charged to, each with
  the lease its hold came from (null for unleased counters): the leases are settled, the
  rest counted where they fall.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from modelserve.contract import policy
from modelserve.contract.decisions import ContractBook
from modelserve.contract.policy import Principal
from modelserve.contract.store import CounterEntry, Store, UsageRow, unleased
from modelserve.contract.tables import BIGINT_MAX

Metric = Literal["requests/minute", "tokens/minute", "tokens/day", "tokens/month"]


class CounterUse(BaseModel):
    """One counter a request was charged to."""

    scope: str = Field(min_length=1, description="user:<name> or team:<name>")
    metric: Metric
    # The lease its hold came from; null for a counter the gateway did not lease.
    lease: uuid.UUID | None = None
    # What the request took from the lease: 1 for requests/*, the reserved tokens for tokens/*.
    hold: int = Field(default=0, ge=0, le=BIGINT_MAX)


class UsageRecord(BaseModel):
    # The sender's id for this record: one it sends again is counted once (the gateway
    # retries deliveries it is unsure of). Without one, every delivery counts.
    id: uuid.UUID | None = None
    principal: Principal
    team: str | None = None
    model: str
    # The reservation of the decision that allowed the request: its held tokens are
    # replaced by the tokens really used.
    reservation: uuid.UUID | None = None
    prompt_tokens: int = Field(ge=0, le=BIGINT_MAX)
    completion_tokens: int = Field(ge=0, le=BIGINT_MAX)
    # The leased shape: every counter the request was charged to (then no reservation).
    counters: list[CounterUse] | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _one_shape(self) -> UsageRecord:
        if self.counters is not None and self.reservation is not None:
            raise ValueError("a record with counters has no reservation")
        return self


class Recorded(BaseModel):
    recorded: bool
    reservation_found: bool
    # True: this record's id was recorded before, and nothing was counted again (the
    # field is left out otherwise).
    duplicate: bool | None = None


def usage_row(record: UsageRecord, book: ContractBook) -> UsageRow:
    """`record` as the store records it (JSON-ready: built here, field by field, since
    this runs for every record of every batch). A record of the shape of POST /decide
    counts its tokens in the principal's token windows should its reservation be gone
    (`fallback`)."""
    counters: list[CounterEntry]
    if record.counters is not None:
        counters = [
            {
                "scope": c.scope,
                "metric": c.metric,
                "lease": None if c.lease is None else c.lease.hex,
                "hold": c.hold,
                "fallback": False,
            }
            for c in record.counters
        ]
    else:
        charges = policy.inference_charges(book.scopes(record.principal, record.team), 0)
        counters = unleased(
            (c for c in charges if c.metric.startswith("tokens/")),
            fallback=record.reservation is not None,
        )
    return {
        "id": None if record.id is None else record.id.hex,
        "subject": record.principal.subject,
        "team": record.team,
        "model": record.model,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "reservation": None if record.reservation is None else record.reservation.hex,
        "counters": counters,
    }


async def record(
    store: Store, book: ContractBook, records: Sequence[UsageRecord]
) -> list[Recorded]:
    """Every record in one transaction; an answer per record, in order. There are only
    three answers: each is made once per call and listed as often as it comes."""
    results = await store.record_usages([usage_row(r, book) for r in records])
    duplicate = Recorded(recorded=True, reservation_found=False, duplicate=True)
    answers = {
        False: Recorded(recorded=True, reservation_found=False),
        True: Recorded(recorded=True, reservation_found=True),
    }
    return [duplicate if was_duplicate else answers[found] for was_duplicate, found in results]
