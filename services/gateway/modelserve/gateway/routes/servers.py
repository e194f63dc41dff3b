"""Servers, the seeds' way: POST /serve, GET /status, GET /status/{id}, DELETE /stop/{id};
and POST /scale/{id}, GET /status/{id}/events.

A server is a ModelServe labelled with its owner. A user sees, scales and stops only their
own; admins all. Someone else's server answers 404, exactly as one that does not exist:
its id tells nobody that it is there.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from modelserve.common.errors import ApiError
from modelserve.common.modelserve import TEAM_LABEL
from modelserve.common.tokens import Claims
from modelserve.gateway.auth import Caller
from modelserve.gateway.deps import (
    BookDep,
    ContractsDep,
    RegistryDep,
    RoutesDep,
    ServersDep,
    SettingsDep,
)
from modelserve.gateway.kubeservers import ServerStore
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.models import find_model
from modelserve.gateway.paging import Limit, Offset, set_total
from modelserve.gateway.routing import RouteTable
from modelserve.gateway.server_events import DEFAULT_EVENTS, MAX_EVENTS, EventView, server_events
from modelserve.gateway.server_state import server_state
from modelserve.gateway.servers import (
    STOPPING,
    ScaleRequest,
    ServeRequest,
    ServerStatus,
    build_modelserve,
    new_suffix,
    owner_scope,
    scale_refusal,
    scaled,
    server_status,
)

router = APIRouter(tags=["servers"])

# Names end in a random suffix; a clash is rare, two in a row rarer still.
NAME_ATTEMPTS = 3


def _team(claims: Claims, asked: str | None) -> str | None:
    """The team the server is for: the one asked for, if the caller is in it, else their
    first (as the contract service picks it)."""
    if asked is None:
        return claims.teams[0] if claims.teams else None
    if asked not in claims.teams:
        raise ApiError(403, "team_not_member", f"{claims.sub} is not a member of team {asked}")
    return asked


async def _owned(servers: ServerStore, server_id: str, claims: Claims) -> dict[str, Any]:
    """The server's ModelServe; 404 unless the caller owns it or is an admin."""
    item = await servers.find(server_id, owner_scope(claims))
    if item is None:
        raise ApiError(404, "server_not_found", f"no server {server_id}")
    return item


@router.post("/serve", status_code=201)
async def serve(
    body: ServeRequest,
    claims: Caller,
    settings: SettingsDep,
    registry: RegistryDep,
    contracts: ContractsDep,
    servers: ServersDep,
) -> ServerStatus:
    """Serve a downloaded model: the contract service decides, then a ModelServe is made.

    The answer's `server_id` is the ModelServe's UID; `status` follows in GET /status/{id}.
    """
    record = await find_model(
        claims, registry, contracts, model_uuid=body.model_uuid, model_name=body.model_name
    )
    namespace = body.namespace or settings.namespace
    if servers.namespaces is not None and namespace not in servers.namespaces:
        raise ApiError(
            403,
            "namespace_not_served",
            f"this gateway serves namespaces {', '.join(servers.namespaces)}, not {namespace}",
        )
    team = _team(claims, body.team)
    for attempt in range(NAME_ATTEMPTS):
        manifest = build_modelserve(
            body, record, owner=claims.sub, team=team, namespace=namespace, suffix=new_suffix()
        )
        if contracts is not None:
            spec = manifest["spec"]
            decision = await contracts.decide(
                claims,
                "serve",
                {
                    "namespace": namespace,
                    "name": manifest["metadata"]["name"],
                    "model": spec["model"]["servedName"],
                    "runtime": spec["runtime"],
                    "replicas": spec["replicas"],
                    "gpus": spec["resources"]["gpus"],
                    # Pods per replica, each with `gpus`: the contract counts every GPU of
                    # a group over several nodes.
                    "nodes": spec["resources"].get("nodes", 1),
                    "team": team,
                },
            )
            if not decision.allowed:
                raise ApiError(403, decision.reason, decision.message)
        try:
            created = await servers.create(manifest)
        except ApiError as error:
            if error.code == "conflict" and attempt + 1 < NAME_ATTEMPTS:
                continue
            raise
        return server_status(created, ingress_url=settings.ingress_url)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _view(
    item: dict[str, Any], ingress_url: str | None, routes: RouteTable, book: LoadBook
) -> ServerStatus:
    """The server as /status shows it, with its loading state."""
    state = server_state(item, routes, book)
    return server_status(item, ingress_url=ingress_url, state=state and state.value)


@router.get("/status")
async def list_servers(
    claims: Caller,
    settings: SettingsDep,
    servers: ServersDep,
    routes: RoutesDep,
    book: BookDep,
    response: Response,
    limit: Limit = 1000,
    offset: Offset = 0,
) -> list[ServerStatus]:
    """The caller's servers (an admin's: all), oldest first, a page at a time
    (X-Total-Count: how many in all)."""
    items = await servers.list(owner_scope(claims))
    found = [_view(item, settings.ingress_url, routes, book) for item in items]
    found.sort(key=lambda server: (server.created or "", server.name))
    set_total(response, len(found))
    return found[offset : offset + limit]


@router.get("/status/{server_id}")
async def get_server(
    server_id: str,
    claims: Caller,
    settings: SettingsDep,
    servers: ServersDep,
    routes: RoutesDep,
    book: BookDep,
) -> ServerStatus:
    item = await _owned(servers, server_id, claims)
    return _view(item, settings.ingress_url, routes, book)


@router.get("/status/{server_id}/events")
async def get_server_events(
    server_id: str,
    claims: Caller,
    servers: ServersDep,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = DEFAULT_EVENTS,
) -> list[EventView]:
    """The Kubernetes Events of the server's ModelServe, Deployment, ReplicaSets and pods,
    newest first (at most `limit`)."""
    item = await _owned(servers, server_id, claims)
    metadata = item["metadata"]
    # Other servers of its namespace may have names it is a prefix of: their pods and
    # ReplicaSets are theirs (`server_events`).
    found, neighbours = await asyncio.gather(
        servers.events(item), servers.names_in(metadata["namespace"])
    )
    return server_events(
        found, uid=metadata["uid"], name=metadata["name"], limit=limit, neighbours=neighbours
    )


@router.post("/scale/{server_id}")
async def scale(
    server_id: str,
    body: ScaleRequest,
    claims: Caller,
    settings: SettingsDep,
    contracts: ContractsDep,
    servers: ServersDep,
    routes: RoutesDep,
    book: BookDep,
) -> ServerStatus:
    """Set the server's replicas (its ModelServe's scale subresource). The contract service
    decides first, as for a serve; its webhook then decides for the server's owner."""
    item = await _owned(servers, server_id, claims)
    refusal = scale_refusal(item)
    if refusal is not None:
        raise refusal
    metadata = item["metadata"]
    if contracts is not None:
        resource: dict[str, Any] = {
            "namespace": metadata["namespace"],
            "name": metadata["name"],
            "replicas": body.replicas,
        }
        # Counted against the server's team, as the webhook counts it for the owner (an
        # admin outside that team is not limited and names none).
        team = (metadata.get("labels") or {}).get(TEAM_LABEL)
        if team is not None and team in claims.teams:
            resource["team"] = team
        decision = await contracts.decide(claims, "scale", resource)
        if not decision.allowed:
            raise ApiError(403, decision.reason, decision.message)
    replicas = await servers.scale(item, body.replicas)
    return _view(scaled(item, replicas), settings.ingress_url, routes, book)


@router.delete("/stop/{server_id}")
async def stop(
    server_id: str, claims: Caller, settings: SettingsDep, servers: ServersDep
) -> ServerStatus:
    """Delete the server's ModelServe; its Deployment, Service and route go with it."""
    item = await _owned(servers, server_id, claims)
    await servers.delete(item)
    stopped = server_status(item, ingress_url=settings.ingress_url, state=None)
    return stopped.model_copy(update={"status": STOPPING, "message": "deleted"})
