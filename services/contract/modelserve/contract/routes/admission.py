"""The admission routes, served only by the webhook app (TLS, the API server's certificate):
the validating review of every ModelServe write and the mutation that stamps the owner."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from modelserve.common.database import DatabaseUnavailable
from modelserve.common.errors import error_body
from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.settings import split
from modelserve.contract import admission
from modelserve.contract.admission import Refused, Requester, Review
from modelserve.contract.decisions import Decider
from modelserve.contract.deps import DeciderDep, MetricsDep, SettingsDep
from modelserve.contract.external_urls import url_refusal
from modelserve.contract.inventory import Inventory
from modelserve.contract.policy import Action
from modelserve.contract.settings import ContractSettings
from modelserve.contract.tables import Server

router = APIRouter(tags=["admission"])


async def _body(request: Request) -> Any:
    """The JSON body, or None when it is not JSON (answered as a malformed review)."""
    try:
        return await request.json()
    except ValueError:
        return None


def _malformed(error: admission.Malformed) -> JSONResponse:
    return JSONResponse(error_body("invalid_admission_review", str(error)), status_code=400)


@router.post(admission.MUTATE_PATH)
async def mutate(request: Request, settings: SettingsDep) -> Any:
    """Stamps the owner label (and the team label of a member of one team) on a create."""
    try:
        review = Review.from_body(await _body(request))
    except admission.Malformed as error:
        return _malformed(error)
    except Refused as error:
        return admission.response(admission.uid_of(await _body(request)), False, str(error))
    try:
        patch = admission.owner_patch(review, admission.requester(review, settings))
    except Refused as error:
        return admission.response(review.uid, False, str(error))
    return admission.response(review.uid, True, patch=patch)


@router.post(admission.PATH)
async def review(
    request: Request, decider: DeciderDep, settings: SettingsDep, metrics: MetricsDep
) -> Any:
    """Answers an AdmissionReview, counted in the decisions metric (source `admission`);
    writes nothing (the ledger follows the cluster). A malformed review is no decision."""
    body = await _body(request)
    try:
        review = Review.from_body(body)
    except admission.Malformed as error:
        return _malformed(error)
    except Refused as error:
        answer = admission.response(admission.uid_of(body), False, str(error))
        metrics.admitted(None, *admission.verdict(answer))
        return answer
    answer = await _answer(review, request, decider, settings)
    metrics.admitted(review.action, *admission.verdict(answer))
    return answer


async def _answer(
    review: Review, request: Request, decider: Decider, settings: ContractSettings
) -> dict[str, Any]:
    who = admission.requester(review, settings)
    forged = (
        admission.rollout_annotation_refusal(review, who)
        or admission.finalizer_refusal(review, who)
        or admission.orphan_refusal(review, who)
    )
    if forged is not None:
        return admission.response(review.uid, False, forged)
    if review.changes_nothing_that_runs:
        refusal = admission.metadata_refusal(review, who)
        return admission.response(review.uid, refusal is None, refusal or "")
    try:
        return await _judge(review, who, request, decider, settings)
    except Refused as error:
        return admission.response(review.uid, False, str(error))
    except DatabaseUnavailable as error:
        # Fail closed, as the webhook's failurePolicy does when the service is down.
        return admission.response(review.uid, False, f"[policy_store_unavailable] {error}")
    except psycopg.DataError as error:
        return admission.response(review.uid, False, f"[invalid_value] {error}")


async def _judge(
    review: Review,
    who: admission.Requester,
    request: Request,
    decider: Decider,
    settings: ContractSettings,
) -> dict[str, Any]:
    refusal = admission.platform_refusal(review, who, settings)
    if refusal is not None:
        raise Refused(refusal)
    if review.action is Action.STOP:
        # From the object's own labels: a deletion is judged even with the database away.
        owner = admission.labels_of(review.old_object).get(OWNER_LABEL)
        if not (who.admin or who.system):
            subject = admission.principal(who, review).subject
            _refuse(admission.owner_refusal(review, subject, owner))
        return admission.response(review.uid, True)
    if review.action is Action.SCALE:
        recorded = await _server(review, request, decider)
        principal = admission.principal(who, review, recorded)
        if not who.admin:
            _refuse(admission.owner_refusal(review, principal.subject, recorded.owner))
        resource = admission.scaled(review, recorded)
    else:
        principal = admission.principal(who, review)
        if review.operation == "UPDATE" and not who.admin:
            owner = admission.labels_of(review.old_object).get(OWNER_LABEL)
            _refuse(admission.owner_refusal(review, principal.subject, owner))
        _refuse(admission.label_refusal(review, who))
        resource = admission.resource(review, who, settings)
        await _check_external(review, who, settings)
        team = admission.labels_of(review.object).get(TEAM_LABEL)
        old_team = admission.labels_of(review.old_object).get(TEAM_LABEL)
        if review.operation == "UPDATE" and old_team and not team and not who.admin:
            # Without its label the server would count against no team's totals.
            raise Refused(
                f"[team_label_removed] {review.namespace}/{review.name} counts against team "
                f"{old_team}: its label {TEAM_LABEL} stays (an admin may remove it)"
            )
        same_team = team == old_team
        if (
            review.operation == "UPDATE"
            and same_team
            and admission.spec_of(review.object) == admission.spec_of(review.old_object)
        ):
            return admission.response(review.uid, True)  # labels only: nothing runs differently
        # A new (or removed) team label moves the server to another team's totals: decided
        # like a serve, so that a team at its limit cannot shed a server by relabelling it.
    decision = await decider.decide(principal, review.action, resource, record=False)
    return admission.decision_response(review.uid, decision)


def _refuse(refusal: str | None) -> None:
    if refusal is not None:
        raise Refused(refusal)


async def _check_external(review: Review, who: Requester, settings: ContractSettings) -> None:
    url = admission.external_url(review)
    if url is None or who.admin:
        return
    refusal = await url_refusal(
        url,
        cluster_cidrs=split(settings.cluster_cidrs),
        allowed=split(settings.external_allowed),
    )
    if refusal is not None:
        raise Refused(f"[external_url_refused] {refusal}")


async def _server(review: Review, request: Request, decider: Decider) -> Server:
    """The server a scale is about (a Scale names only the replicas): the ledger's row, or
    the ModelServe itself when the inventory has not seen it yet."""
    recorded = await decider.store.server(review.namespace, review.name)
    if recorded is not None:
        return recorded
    inventory: Inventory | None = getattr(request.app.state, "inventory", None)
    found = await inventory.read(review.namespace, review.name) if inventory else None
    if found is None:
        raise Refused(
            f"[server_unknown] {review.namespace}/{review.name} is not known yet; try again"
        )
    return found
