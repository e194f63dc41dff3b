"""The OpenAI-compatible API: /v1/models, /v1/chat/completions, /v1/completions,
/v1/embeddings, routed by `model` to a server that serves it (see `proxy`). A server's
own paths, `/{server_id}/v1/…`, are in `server_openai`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from modelserve.gateway.auth import Caller
from modelserve.gateway.deps import ProxyDep, RoutesDep
from modelserve.gateway.openai_errors import model_not_found
from modelserve.gateway.proxy_requests import CHAT, COMPLETIONS, EMBEDDINGS
from modelserve.gateway.routing import Target

router = APIRouter(prefix="/v1", tags=["openai"])


def model_object(target: Target) -> dict[str, Any]:
    return {
        "id": target.served_name,
        "object": "model",
        "created": target.created,
        "owned_by": target.owner or "modelserve",
    }


@router.get("/models")
async def list_models(claims: Caller, routes: RoutesDep) -> dict[str, Any]:
    """The models the caller may use, among the servers the gateway knows (ready or not:
    a request for one that is not ready yet answers 503 with a Retry-After)."""
    return {"object": "list", "data": [model_object(target) for target in routes.models(claims)]}


# `:path`: served names may hold a slash (`meta-llama/Llama-3.1-8B-Instruct`).
@router.get("/models/{model:path}")
async def retrieve_model(model: str, claims: Caller, routes: RoutesDep) -> dict[str, Any]:
    for target in routes.models(claims):
        if target.served_name == model:
            return model_object(target)
    raise model_not_found(model)


@router.post("/chat/completions")
async def chat_completions(request: Request, claims: Caller, proxy: ProxyDep) -> Response:
    return await proxy.forward(request, claims, CHAT)


@router.post("/completions")
async def completions(request: Request, claims: Caller, proxy: ProxyDep) -> Response:
    return await proxy.forward(request, claims, COMPLETIONS)


@router.post("/embeddings")
async def embeddings(request: Request, claims: Caller, proxy: ProxyDep) -> Response:
    return await proxy.forward(request, claims, EMBEDDINGS)
