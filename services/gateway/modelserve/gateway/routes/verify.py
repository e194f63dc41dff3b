"""Forward authentication for Traefik: may this bearer use this server?

The operator puts each server's direct route (`/{server-id}/`) behind a forwardAuth
middleware whose address is `<gateway>/auth/verify?server=<server-id>`. Traefik sends
the client's headers here (its Authorization included) before every request on that
route and lets it through only on a 2xx, copying X-ModelServe-User and X-ModelServe-Team
from this answer onto the request (replacing any a client sent).

It answers from the route table, which discovery keeps current: no lookup per request.
Traefik sends its own method for the check (GET, or the client's with
`preserveRequestMethod`), so any method is answered alike.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from modelserve.common.errors import ApiError
from modelserve.gateway.auth import Caller
from modelserve.gateway.deps import RoutesDep

router = APIRouter(tags=["auth"])

USER_HEADER = "X-ModelServe-User"
TEAM_HEADER = "X-ModelServe-Team"
RETRY = {"Retry-After": "1"}


@router.api_route(
    "/auth/verify",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,  # Traefik's, not a client's; one operation per method otherwise
)
async def verify(claims: Caller, routes: RoutesDep, server: str = "") -> Response:
    """200 with the caller's name and team for the server's owner, members of its team,
    admins and services; 401 without a valid token; 403 for anyone else; 404 for a
    server the gateway does not know."""
    if not server:
        raise ApiError(400, "bad_request", "name the server: /auth/verify?server=<server id>")
    target = routes.server(server)
    if target is None and not routes.synced:
        raise ApiError(503, "routes_loading", "the gateway is still loading its routes", RETRY)
    if target is None:
        raise ApiError(404, "server_not_found", f"no server has the id {server!r}")
    if not target.may_use(claims):
        raise ApiError(403, "forbidden", f"{claims.sub} may not use the server {server}")
    if target.team is not None and target.team in claims.teams:
        team = target.team
    else:
        team = claims.teams[0] if claims.teams else ""
    # Always both headers, even empty: Traefik then overwrites whatever a client sent.
    return Response(status_code=200, headers={USER_HEADER: claims.sub, TEAM_HEADER: team})
