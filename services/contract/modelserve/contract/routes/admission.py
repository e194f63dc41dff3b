"""POST /admission/modelserves: the API server asks before a ModelServe is written."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from modelserve.contract import admission
from modelserve.contract.deps import DeciderDep, SettingsDep
from modelserve.contract.policy import Action
from modelserve.contract.store import StoreUnavailable

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
        principal = admission.principal(request, settings)
        resource = admission.resource(request)
    except admission.Refused as error:
        return admission.response(request.uid, False, str(error))
    try:
        decision = await decider.decide(
            principal, request.action, resource, record=not request.dry_run
        )
    except StoreUnavailable as error:
        # Fail closed, as the webhook's failurePolicy does when the service is down.
        return admission.response(request.uid, False, f"[policy_store_unavailable] {error}")
    return admission.decision_response(request.uid, decision)


def _same_server(request: admission.Review) -> bool:
    return bool(request.old_object) and (
        (request.object.get("spec") or {}) == (request.old_object.get("spec") or {})
    )
