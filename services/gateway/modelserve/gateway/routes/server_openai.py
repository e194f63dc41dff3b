"""A server's own OpenAI paths: `/{server_id}/v1/chat/completions`, `/completions`,
`/embeddings`, `/responses`, `/rerank`, `/score`, `/tokenize`, `/detokenize` and
`/models`, where Traefik's per-server route `/{server-id}/` leads
(the path kept). They pass the same proxy as `/v1/…` (the contract's limits, usage,
metrics, inference-time scaling), with the server named by its id instead of by `model`.

`server_id` must be a UUID (a ModelServe's uid), so these paths never shadow the
gateway's own (`/v1/…`, `/auth/…`, `/models`, `/status/{id}`, …).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response

from modelserve.common.tokens import Claims
from modelserve.gateway.auth import Caller, caller
from modelserve.gateway.contracts import ContractClient
from modelserve.gateway.deps import BookDep, ContractsDep, RoutesDep
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.loading.listing import status_of
from modelserve.gateway.openai_errors import OPENAI_ERRORS, PROXIED_ERRORS, model_not_found
from modelserve.gateway.openai_requests import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    PassThroughRequest,
    ResponsesRequest,
    Shape,
    request_body,
)
from modelserve.gateway.proxy_requests import (
    CHAT,
    COMPLETIONS,
    DETOKENIZE,
    EMBEDDINGS,
    RERANK,
    RESPONSES,
    SCORE,
    TOKENIZE,
    Operation,
    server_for,
)
from modelserve.gateway.routes.openai import model_object, proxy_of
from modelserve.gateway.routing import RouteTable, Target
from modelserve.gateway.usable_models import allowed_name

router = APIRouter(prefix="/{server_id:uuid}/v1", tags=["openai"], responses=OPENAI_ERRORS)


def _body(shape: Shape) -> dict[str, Any]:
    """The request body in OpenAPI: `model` may be left out (the server's is filled in)."""
    return request_body(shape, model_required=False)


def adapter_views(target: Target) -> list[Target]:
    """The server as a request for each of its LoRA adapters (spec.adapters) sees it, in
    the order of spec.adapters."""
    views = (target.as_adapter(adapter.name) for adapter in target.adapters)
    return [view for view in views if view is not None]


@router.get("/models")
async def list_server_models(
    server_id: uuid.UUID,
    claims: Caller,
    routes: RoutesDep,
    contracts: ContractsDep,
    book: BookDep,
) -> dict[str, Any]:
    """The model the server serves (ready or not), then its LoRA adapters that the
    caller's contract allows, each as `/v1/models` lists models (an adapter with `parent`
    and `root`), with this server's state and last use."""
    data = await _server_models(str(server_id), claims, routes, contracts, book)
    return {"object": "list", "data": data}


@router.get("/models/{model:path}")
async def retrieve_server_model(
    server_id: uuid.UUID,
    model: str,
    claims: Caller,
    routes: RoutesDep,
    contracts: ContractsDep,
    book: BookDep,
) -> dict[str, Any]:
    """One model of those `GET /{server_id}/v1/models` lists; any other is unknown (404
    `model_not_found`), as OpenAI answers."""
    for found in await _server_models(str(server_id), claims, routes, contracts, book):
        if found["id"] == model:
            return found
    raise model_not_found(model)


async def _server_models(
    server_id: str,
    claims: Claims,
    routes: RouteTable,
    contracts: ContractClient | None,
    book: LoadBook,
) -> list[dict[str, Any]]:
    target = server_for(routes, server_id, claims)
    adapters = adapter_views(target)
    if adapters and contracts is not None and not claims.is_admin:
        allowlists = await contracts.model_allowlists(claims)
        adapters = [view for view in adapters if allowed_name(view.served_name, allowlists)]
    status = status_of([target], routes, book)
    return [model_object(view, status) for view in (target, *adapters)]


@router.post("/chat/completions", responses=PROXIED_ERRORS, openapi_extra=_body(ChatRequest))
async def server_chat_completions(server_id: uuid.UUID, request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward_to_server(request, claims, CHAT, str(server_id))


@router.post("/completions", responses=PROXIED_ERRORS, openapi_extra=_body(CompletionRequest))
async def server_completions(server_id: uuid.UUID, request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward_to_server(request, claims, COMPLETIONS, str(server_id))


@router.post("/embeddings", responses=PROXIED_ERRORS, openapi_extra=_body(EmbeddingRequest))
async def server_embeddings(server_id: uuid.UUID, request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward_to_server(request, claims, EMBEDDINGS, str(server_id))


@router.post("/responses", responses=PROXIED_ERRORS, openapi_extra=_body(ResponsesRequest))
async def server_responses(server_id: uuid.UUID, request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward_to_server(request, claims, RESPONSES, str(server_id))


# The pass-throughs of /v1 (not audio transcriptions: a form keeps its `model`, which
# the gateway would have to write into it). One route each, as OpenAPI lists them.
async def _passed(server_id: uuid.UUID, request: Request, operation: Operation) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward_to_server(request, claims, operation, str(server_id))


@router.post("/rerank", responses=PROXIED_ERRORS, openapi_extra=_body(PassThroughRequest))
async def server_rerank(server_id: uuid.UUID, request: Request) -> Response:
    return await _passed(server_id, request, RERANK)


@router.post("/score", responses=PROXIED_ERRORS, openapi_extra=_body(PassThroughRequest))
async def server_score(server_id: uuid.UUID, request: Request) -> Response:
    return await _passed(server_id, request, SCORE)


@router.post("/tokenize", responses=PROXIED_ERRORS, openapi_extra=_body(PassThroughRequest))
async def server_tokenize(server_id: uuid.UUID, request: Request) -> Response:
    return await _passed(server_id, request, TOKENIZE)


@router.post("/detokenize", responses=PROXIED_ERRORS, openapi_extra=_body(PassThroughRequest))
async def server_detokenize(server_id: uuid.UUID, request: Request) -> Response:
    return await _passed(server_id, request, DETOKENIZE)
