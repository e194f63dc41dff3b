"""Servers, the seeds' way: POST /serve, GET /status, GET /status/{id}, DELETE /stop/{id}.

A server is a ModelServe labelled with its owner. A user sees and stops only their own;
admins see and stop all. Someone else's server answers 404, exactly as one that does not
exist: its id tells nobody that it is there.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from modelserve.common.errors import ApiError
from modelserve.common.tokens import Claims
from modelserve.gateway.auth import Caller
from modelserve.gateway.deps import ContractsDep, RegistryDep, ServersDep, SettingsDep
from modelserve.gateway.kubeservers import ServerStore
from modelserve.gateway.models import find_model
from modelserve.gateway.servers import (
    STOPPING,
    ServeRequest,
    ServerStatus,
    build_modelserve,
    new_suffix,
    owner_scope,
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


@router.get("/status")
async def list_servers(
    claims: Caller, settings: SettingsDep, servers: ServersDep
) -> list[ServerStatus]:
    """The caller's servers (an admin's: all), oldest first."""
    items = await servers.list(owner_scope(claims))
    found = [server_status(item, ingress_url=settings.ingress_url) for item in items]
    return sorted(found, key=lambda server: (server.created or "", server.name))


@router.get("/status/{server_id}")
async def get_server(
    server_id: str, claims: Caller, settings: SettingsDep, servers: ServersDep
) -> ServerStatus:
    item = await _owned(servers, server_id, claims)
    return server_status(item, ingress_url=settings.ingress_url)


@router.delete("/stop/{server_id}")
async def stop(
    server_id: str, claims: Caller, settings: SettingsDep, servers: ServersDep
) -> ServerStatus:
    """Delete the server's ModelServe; its Deployment, Service and route go with it."""
    item = await _owned(servers, server_id, claims)
    await servers.delete(item)
    stopped = server_status(item, ingress_url=settings.ingress_url)
    return stopped.model_copy(update={"status": STOPPING, "message": "deleted"})
