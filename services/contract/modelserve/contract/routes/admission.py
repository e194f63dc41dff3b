"""POST /admission/modelserves: the API server asks before a ModelServe is written."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from modelserve.common.database import DatabaseUnavailable
from modelserve.contract import admission
from modelserve.contract.decisions import Decider
from modelserve.contract.deps import DeciderDep, SettingsDep
from modelserve.contract.policy import Action
from modelserve.contract.tables import Server

router = APIRouter(tags=["admission"])


@router.post(admission.PATH)
async def review(body: dict[str, Any], decider: DeciderDep, settings: SettingsDep) -> Any:
    """Answers an AdmissionReview. Writes that do not change what runs (kopf's annotations,
    labels, the same replica count) are allowed without a decision."""
    request = admission.Review.from_body(body)
    if request.operation == "UPDATE" and _same_server(request):
        return admission.response(request.uid, True)
    if request.action is Action.STOP:
        if not request.dry_run:
            await decider.store.forget_server(request.namespace, request.name)
        return admission.response(request.uid, True)
    try:
        recorded = await _scaled_server(request, decider)
        principal = admission.principal(request, settings, recorded)
        resource = admission.resource(request, recorded)
        decision = await decider.decide(
            principal, request.action, resource, record=not request.dry_run
        )
    except admission.Refused as error:
        return admission.response(request.uid, False, str(error))
    except DatabaseUnavailable as error:
        # Fail closed, as the webhook's failurePolicy does when the service is down.
        return admission.response(request.uid, False, f"[policy_store_unavailable] {error}")
    return admission.decision_response(request.uid, decision)


async def _scaled_server(request: admission.Review, decider: Decider) -> Server | None:
    """The ledger's row of the server a scale is about: a Scale names only the replicas."""
    if request.action is Action.SCALE:
        return await decider.store.server(request.namespace, request.name)
    return None


def _same_server(request: admission.Review) -> bool:
    return bool(request.old_object) and (
        (request.object.get("spec") or {}) == (request.old_object.get("spec") or {})
    )
