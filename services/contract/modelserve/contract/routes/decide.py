"""POST /decide: may this principal do this action on this resource?"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from modelserve.common.auth import Caller
from modelserve.common.errors import ApiError
from modelserve.contract.deps import DeciderDep, MetricsDep, acting_for
from modelserve.contract.policy import Action, Decision, Principal, Resource

router = APIRouter(tags=["decisions"])
# Decisions that write when not a dry run: a serve or scale records the server as pending,
# an inference holds its tokens. Stop and download decisions write nothing either way.
RECORDING = (Action.SERVE, Action.SCALE, Action.INFER)
ABOUT_A_SERVER = (Action.SERVE, Action.SCALE, Action.STOP)


class DecideRequest(BaseModel):
    # Left out: the caller. Services (the gateway) name the user they act for.
    principal: Principal | None = None
    action: Action
    resource: Resource = Resource()
    # A dry run decides without recording the server or holding tokens. Only platform
    # services (the gateway, before it writes a ModelServe or forwards a request) decide
    # for real: anyone else may only ask.
    dry_run: bool = False


@router.post("/decide", response_model_exclude_none=True)
async def decide(
    body: DecideRequest, claims: Caller, decider: DeciderDep, metrics: MetricsDep
) -> Decision:
    """Allowed or not, with a stable `reason` code and a message naming the limit hit.

    A denial is an answer, not an error: it comes with status 200.
    """
    if not body.dry_run and body.action in RECORDING and not claims.is_service:
        raise ApiError(
            403,
            "service_only",
            f"only platform services decide a {body.action} for real: ask with dry_run true",
        )
    if body.action in ABOUT_A_SERVER and not (body.resource.namespace and body.resource.name):
        raise ApiError(
            422,
            "invalid_request",
            f"a {body.action} decision needs resource.namespace and resource.name",
        )
    principal = acting_for(claims, body.principal)
    decision = await decider.decide(principal, body.action, body.resource, record=not body.dry_run)
    metrics.decided(body.action, decision)
    return decision
