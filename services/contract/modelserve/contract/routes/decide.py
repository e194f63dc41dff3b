"""POST /decide: may this principal do this action on this resource?"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from modelserve.common.auth import Caller
from modelserve.contract.deps import DeciderDep, acting_for
from modelserve.contract.policy import Action, Decision, Principal, Resource

router = APIRouter(tags=["decisions"])


class DecideRequest(BaseModel):
    # Left out: the caller. Services (the gateway) name the user they act for.
    principal: Principal | None = None
    action: Action
    resource: Resource = Resource()
    # A dry run decides without recording the server or holding tokens.
    dry_run: bool = False


@router.post("/decide", response_model_exclude_none=True)
async def decide(body: DecideRequest, claims: Caller, decider: DeciderDep) -> Decision:
    """Allowed or not, with a stable `reason` code and a message naming the limit hit.

    A denial is an answer, not an error: it comes with status 200.
    """
    principal = acting_for(claims, body.principal)
    return await decider.decide(principal, body.action, body.resource, record=not body.dry_run)
