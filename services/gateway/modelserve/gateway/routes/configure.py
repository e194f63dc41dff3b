"""POST /configure: a model's inference-time scaling defaults (admins), in the seeds' shape.

The seeds' IaaS service was told its upstream and reward model here. The platform knows
where models run from their ModelServes, so this sets the defaults of every ModelServe
serving `model` (their `spec.scaling`), which the gateway then reads from its watch.
`endpoint`, `api_key` and `rm_device` are accepted and ignored: a reward model is
another ModelServe, named by `rm_name`, which has its own devices.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelserve.common.errors import ApiError
from modelserve.common.modelserve import Aggregation, Algorithm, RewardKind
from modelserve.gateway.auth import Admin
from modelserve.gateway.deps import ServersDep, SettingsDep
from modelserve.gateway.openai_requests import request_body
from modelserve.gateway.servers import server_status

router = APIRouter(tags=["scaling"])


class Configure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="the served name whose defaults change")
    alg: Algorithm | None = Field(default=None, description="the default algorithm")
    budget: int | None = Field(default=None, ge=1, le=1024)
    rm_name: str | None = Field(default=None, description="the reward model's served name")
    # The seeds' "model" means the reward model's own scores; min/last/product/mean say how
    # a process reward model's step scores make one.
    rm_agg_method: str | None = None
    reward: RewardKind | None = None
    answer_pattern: str | None = Field(default=None, max_length=1024)
    step_delimiter: str | None = Field(default=None, min_length=1, max_length=64)
    # The seeds' fields that the platform decides itself.
    endpoint: str | None = None
    api_key: str | None = None
    rm_device: str | None = None


def scaling_patch(body: Configure) -> dict[str, Any]:
    """The spec.scaling fields `body` sets (camelCase), or a 400 for a bad value."""
    patch: dict[str, Any] = {}
    if body.alg is not None:
        patch["algorithm"] = body.alg.value
    if body.budget is not None:
        patch["budget"] = body.budget
    if body.rm_name is not None:
        patch["rewardModel"] = body.rm_name
    if body.reward is not None:
        patch["reward"] = body.reward.value
    method = body.rm_agg_method
    if method == "model":
        patch.setdefault("reward", RewardKind.MODEL.value)
    elif method is not None:
        try:
            patch["rewardAggregation"] = Aggregation(method).value
        except ValueError:
            choices = ", ".join(["model", *(a.value for a in Aggregation)])
            raise ApiError(400, "bad_request", f"rm_agg_method must be one of {choices}") from None
    if body.answer_pattern is not None:
        try:
            re.compile(body.answer_pattern)
        except re.error as error:
            raise ApiError(400, "bad_request", f"answer_pattern: {error}") from None
        patch["answerPattern"] = body.answer_pattern
    if body.step_delimiter is not None:
        patch["stepDelimiter"] = body.step_delimiter
    return patch


def parsed(payload: dict[str, Any]) -> Configure:
    """The body as a Configure, or a 400 naming its first bad field (the seeds' service
    answered 400 to a bad configuration, not FastAPI's 422)."""
    try:
        return Configure.model_validate(payload)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in e['loc']) or 'body'}: {e['msg']}"
            for e in error.errors()
        ]
        raise ApiError(400, "bad_request", "; ".join(problems)) from None


@router.post("/configure", openapi_extra=request_body(Configure, model_required=False))
async def configure(
    payload: Annotated[dict[str, Any], Body()],
    _: Admin,
    servers: ServersDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Set the scaling defaults of every server of `model`; 404 when none serves it, 400
    for a bad value."""
    body = parsed(payload)
    patch = scaling_patch(body)
    serving = [
        item
        for item in await servers.list(None)
        if (item.get("spec", {}).get("model", {}).get("servedName") or item["metadata"]["name"])
        == body.model
    ]
    if not serving:
        raise ApiError(404, "model_not_found", f"no server serves the model {body.model!r}")
    configured = [await servers.set_scaling(item, patch) for item in serving] if patch else serving
    return {
        "status": "success",
        "model": body.model,
        "scaling": patch,
        "servers": [server_status(item, ingress_url=settings.ingress_url) for item in configured],
    }
