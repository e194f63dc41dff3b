"""GET /usage, GET /usage/daily, GET /contracts/me and GET /contracts/limits of the
contract service, passed through as the caller (their Authorization header, on the
gateway's one client of the contract service), answers and refusals kept. Without a
contract service (GATEWAY_CONTRACT_URL unset) they answer 404 `contract_not_configured`;
one that cannot be reached, or answers what the gateway cannot read, is 503
`contract_unavailable`."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ValidationError

from modelserve.common.errors import ApiError
from modelserve.gateway.auth import Caller, CallerAuthorization
from modelserve.gateway.contracts import ContractClient
from modelserve.gateway.deps import ContractsDep
from modelserve.gateway.usage_view.answers import (
    DailyUsage,
    MyContract,
    SubjectLimits,
    UsageReport,
)

router = APIRouter(tags=["usage"])
Answer = TypeVar("Answer", bound=BaseModel)


async def _configured(contracts: ContractsDep) -> ContractClient:
    if contracts is None:
        raise ApiError(
            404,
            "contract_not_configured",
            "this gateway has no contract service (GATEWAY_CONTRACT_URL): no usage or limits",
        )
    return contracts


ContractDep = Annotated[ContractClient, Depends(_configured)]


def _read(kind: type[Answer], answer: Any) -> Answer:
    try:
        return kind.model_validate(answer)
    except ValidationError as error:
        raise ApiError(
            503,
            "contract_unavailable",
            f"the contract service sent an answer the gateway cannot read: {error}",
        ) from error


@router.get("/usage")
async def usage(
    authorization: CallerAuthorization,
    _: Caller,
    contracts: ContractDep,
    period: Literal["day", "month"] = "month",
    user: str | None = None,
    team: str | None = None,
) -> UsageReport:
    """Totals since the start of this UTC day or month, per model: your own by default;
    a team's for its members; anyone's for admins."""
    params = {"period": period, "user": user, "team": team}
    answer = await contracts.read_as_caller("/usage", authorization, params)
    return _read(UsageReport, answer)


@router.get("/usage/daily")
async def daily_usage(
    authorization: CallerAuthorization,
    _: Caller,
    contracts: ContractDep,
    days: Annotated[int, Query(ge=1, le=90, description="UTC days up to today")] = 30,
    user: str | None = None,
    team: str | None = None,
) -> DailyUsage:
    """Requests and tokens per UTC day over the last `days` days (zeros for days without
    use); whose as for GET /usage."""
    params = {"days": days, "user": user, "team": team}
    answer = await contracts.read_as_caller("/usage/daily", authorization, params)
    return _read(DailyUsage, answer)


@router.get("/contracts/me")
async def my_contract(
    authorization: CallerAuthorization, _: Caller, contracts: ContractDep
) -> MyContract:
    """Your limits (your contract over the defaults) and your default team's."""
    answer = await contracts.read_as_caller("/contracts/me", authorization)
    return _read(MyContract, answer)


@router.get("/contracts/limits")
async def limits_of(
    authorization: CallerAuthorization,
    _: Caller,
    contracts: ContractDep,
    user: str | None = None,
    team: str | None = None,
) -> SubjectLimits:
    """The limits that hold for a user (their contract over the defaults) or a team (its
    contract, or none); whose as for GET /usage."""
    params = {"user": user, "team": team}
    answer = await contracts.read_as_caller("/contracts/limits", authorization, params)
    return _read(SubjectLimits, answer)
