"""The OpenAI-compatible API: /v1/models, /v1/chat/completions, /v1/completions,
/v1/embeddings and /v1/responses (a chat completion underneath: `responses`), and the
runtimes' own /v1/rerank, /v1/score, /v1/tokenize, /v1/detokenize and
/v1/audio/transcriptions passed through to those that serve them; all routed by `model`
to a server that serves it (see `proxy`). A server's own paths, `/{server_id}/v1/…`,
are in `server_openai`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from modelserve.common.tokens import Claims
from modelserve.gateway.auth import Caller, caller
from modelserve.gateway.deps import BookDep, ContractsDep, RoutesDep
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.loading.listing import ModelStatus, status_of
from modelserve.gateway.openai_errors import OPENAI_ERRORS, PROXIED_ERRORS, model_not_found
from modelserve.gateway.openai_requests import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    PassThroughRequest,
    ResponsesRequest,
    request_body,
)
from modelserve.gateway.proxy import Proxy
from modelserve.gateway.proxy_requests import (
    CHAT,
    COMPLETIONS,
    DETOKENIZE,
    EMBEDDINGS,
    RERANK,
    RESPONSES,
    ROOT_DETOKENIZE,
    ROOT_TOKENIZE,
    SCORE,
    TOKENIZE,
    TRANSCRIPTIONS,
)
from modelserve.gateway.routing import RouteTable, Target
from modelserve.gateway.usable_models import usable_targets

router = APIRouter(prefix="/v1", tags=["openai"], responses=OPENAI_ERRORS)
# vLLM serves /tokenize and /detokenize at its root: the gateway offers them there too.
root_router = APIRouter(tags=["openai"], responses=OPENAI_ERRORS)


def model_object(target: Target, status: ModelStatus) -> dict[str, Any]:
    """OpenAI's model object, with where the model stands (`state`: loaded, loading,
    sleeping, unavailable) and its last use (`last_used`, epoch seconds or null). A LoRA
    adapter names its model in `parent` and `root`, as vLLM lists one."""
    found: dict[str, Any] = {
        "id": target.served_name,
        "object": "model",
        "created": target.created,
        "owned_by": target.owner or "modelserve",
        **status.fields(),
    }
    if target.base_name is not None:
        found["parent"] = found["root"] = target.base_name
    return found


def caller_model(
    target: Target, claims: Claims, routes: RouteTable, book: LoadBook
) -> dict[str, Any]:
    """The model object of `target`'s served name, its state over the caller's servers
    of that name (those their requests go to)."""
    return model_object(target, status_of(routes.nearest(target.served_name, claims), routes, book))


@router.get("/models")
async def list_models(
    claims: Caller, routes: RoutesDep, contracts: ContractsDep, book: BookDep
) -> dict[str, Any]:
    """The models the caller may use, among the servers the gateway knows (ready or not:
    a request for one that is not ready yet answers 503 with a Retry-After, or is held
    while an autoscaled one wakes), each with its `state` and `last_used`."""
    targets = await usable_targets(claims, routes, contracts)
    data = [caller_model(target, claims, routes, book) for target in targets]
    return {"object": "list", "data": data}


# `:path`: served names may hold a slash (`meta-llama/Llama-3.1-8B-Instruct`).
@router.get("/models/{model:path}")
async def retrieve_model(
    model: str, claims: Caller, routes: RoutesDep, contracts: ContractsDep, book: BookDep
) -> dict[str, Any]:
    """One model the caller may use; any other is unknown (404), as OpenAI answers."""
    for target in await usable_targets(claims, routes, contracts):
        if target.served_name == model:
            return caller_model(target, claims, routes, book)
    raise model_not_found(model)


def proxy_of(request: Request) -> Proxy:
    """The proxy, for the routes that forward a request: they take no FastAPI dependency
    (resolving `Caller` and `ProxyDep` took ~7% of a proxied request's CPU), and
    authenticate the caller first, as those would (`caller`)."""
    proxy: Proxy = request.app.state.proxy
    return proxy


@router.post("/chat/completions", responses=PROXIED_ERRORS, openapi_extra=request_body(ChatRequest))
async def chat_completions(request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, CHAT)


@router.post(
    "/completions", responses=PROXIED_ERRORS, openapi_extra=request_body(CompletionRequest)
)
async def completions(request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, COMPLETIONS)


@router.post("/embeddings", responses=PROXIED_ERRORS, openapi_extra=request_body(EmbeddingRequest))
async def embeddings(request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, EMBEDDINGS)


@router.post("/responses", responses=PROXIED_ERRORS, openapi_extra=request_body(ResponsesRequest))
async def responses(request: Request) -> Response:
    """OpenAI's Responses API, answered by the model's chat completions."""
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, RESPONSES)


# Passed through to the runtimes that serve them (docs/gateway.md has the table); a
# model whose runtime does not answers 404 in OpenAI's shape.
PASSED = request_body(PassThroughRequest)


@router.post("/rerank", responses=PROXIED_ERRORS, openapi_extra=PASSED)
async def rerank(request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, RERANK)


@router.post("/score", responses=PROXIED_ERRORS, openapi_extra=PASSED)
async def score(request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, SCORE)


@router.post("/tokenize", responses=PROXIED_ERRORS, openapi_extra=PASSED)
async def tokenize(request: Request) -> Response:
    """The runtime's /tokenize (at its root, as vLLM and llama-server serve it)."""
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, TOKENIZE)


@router.post("/detokenize", responses=PROXIED_ERRORS, openapi_extra=PASSED)
async def detokenize(request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, DETOKENIZE)


# A form: the audio file and its fields, `model` among them.
FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string", "minLength": 1},
                        "file": {"type": "string", "format": "binary"},
                    },
                    "required": ["model", "file"],
                }
            }
        },
    }
}


@router.post("/audio/transcriptions", responses=PROXIED_ERRORS, openapi_extra=FORM)
async def audio_transcriptions(request: Request) -> Response:
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, TRANSCRIPTIONS)


@root_router.post("/tokenize", responses=PROXIED_ERRORS, openapi_extra=PASSED)
async def root_tokenize(request: Request) -> Response:
    """`/v1/tokenize` at the gateway's root, where vLLM's clients call it."""
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, ROOT_TOKENIZE)


@root_router.post("/detokenize", responses=PROXIED_ERRORS, openapi_extra=PASSED)
async def root_detokenize(request: Request) -> Response:
    """`/v1/detokenize` at the gateway's root, where vLLM's clients call it."""
    claims = await caller(request)
    return await proxy_of(request).forward(request, claims, ROOT_DETOKENIZE)


# Called straight from ASGI on a POST of their path (`plain_routes`): they take the
# request alone, and the proxy does the rest.
PLAIN = (
    chat_completions,
    completions,
    embeddings,
    responses,
    rerank,
    score,
    tokenize,
    detokenize,
    audio_transcriptions,
    root_tokenize,
    root_detokenize,
)
