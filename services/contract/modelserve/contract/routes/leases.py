"""POST /leases: slices of a principal's limited counters for a gateway process."""

from __future__ import annotations

from fastapi import APIRouter

from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.contract import leases
from modelserve.contract.deps import DeciderDep, MetricsDep, SettingsDep
from modelserve.contract.leases import LeaseAnswer, LeaseRequest

router = APIRouter(tags=["leases"])


@router.post("/leases")
async def lease(
    body: LeaseRequest,
    claims: Caller,
    decider: DeciderDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> LeaseAnswer:
    """Give back, renew, then grant slices of the principal's limited counters, in one
    transaction; the principal's limits as PostgreSQL has them now. Services only: a
    lease lets its holder decide requests without asking."""
    if not claims.is_service:
        raise ApiError(403, "service_only", "only platform services hold leases")
    answer = await leases.lease(decider.store, settings, decider.book.defaults, body)
    metrics.leased_out(body, answer)
    return answer
