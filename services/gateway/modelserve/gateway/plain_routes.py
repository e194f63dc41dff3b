"""Routes called straight from ASGI: the proxy's hot path without FastAPI's routing.

The endpoints that forward an OpenAI request take only the `Request` (no dependency, no
body model: the proxy reads and checks the body itself). FastAPI still declares them
(OpenAPI, and the answer to any method or path they do not match), but a POST of one of
their exact paths is dispatched here, from the innermost middleware: one dictionary
lookup instead of matching the request against each route in turn, then FastAPI's
request wrapper, its exit stacks and Starlette's exception wrapper. Measured with
`bench/gateway_proxy.py --profile`, those took about a quarter of the gateway's CPU
on a proxied chat completion (docs/gateway.md#what-the-gateway-adds).

What the route would do is done here too: `scope["route"]` and `scope["endpoint"]` name
the route (metrics, spans and error handlers read them), and an exception the endpoint
raises goes to the app's handler for it (OpenAI's shape under /v1), as Starlette's
exception middleware would send it; one that no handler takes goes on to the
outermost middleware, which answers 500 and logs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Any]


class PlainRoutes:
    """ASGI middleware: a POST of one of `routes`' exact paths calls its endpoint."""

    def __init__(
        self,
        app: ASGIApp,
        routes: dict[tuple[str, str], APIRoute],
        handlers: dict[Any, Handler],
    ) -> None:
        self.app = app
        self.routes = routes
        # By exception class, as Starlette's exception middleware holds them: not the
        # handler of `Exception` (and 500), which the outermost middleware runs.
        self.handlers = {
            key: handler
            for key, handler in handlers.items()
            if isinstance(key, type) and key is not Exception
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], _route_path(scope)))
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        request = Request(scope, receive, send)
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            response = await route.endpoint(request)
            await response(scope, receive, sender)
        except Exception as error:
            handler = self._handler(error)
            if handler is None or started:
                raise
            answer = await handler(request, error)
            await answer(scope, receive, sender)

    def _handler(self, error: Exception) -> Handler | None:
        for kind in type(error).__mro__:
            if kind in self.handlers:
                return self.handlers[kind]
        return None


def _route_path(scope: Scope) -> str:
    """The path the routes are matched against: without the app's root path (as
    Starlette's router matches)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return path


def plain_routes(
    routers: Iterable[APIRouter], endpoints: Iterable[Endpoint]
) -> dict[tuple[str, str], APIRoute]:
    """The routes of `endpoints` among `routers`' (included in the app as they are, with
    no prefix of their own), by (method, path). Each must take the request alone, at a
    path without parameters: anything FastAPI would resolve or validate for it would be
    skipped here."""
    wanted = set(endpoints)
    found: dict[tuple[str, str], APIRoute] = {}
    for route in (route for router in routers for route in router.routes):
        if not isinstance(route, APIRoute) or route.endpoint not in wanted:
            continue
        dependant = route.dependant
        takes = (
            dependant.dependencies,
            dependant.path_params,
            dependant.query_params,
            dependant.header_params,
            dependant.cookie_params,
            dependant.body_params,
        )
        if any(takes) or route.param_convertors or dependant.request_param_name is None:
            raise ValueError(f"{route.path}: a plain route takes the request alone")
        for method in route.methods or ():
            found[(method, route.path)] = route
        wanted.discard(route.endpoint)
    if wanted:
        names = ", ".join(sorted(endpoint.__name__ for endpoint in wanted))
        raise ValueError(f"not routes of the routers: {names}")
    return found


def install_plain_routes(
    app: FastAPI, routers: Iterable[APIRouter], endpoints: Iterable[Endpoint]
) -> None:
    """Dispatch `endpoints` (routes of `routers`, which the app includes) from the
    innermost middleware, inside the others (request ids, trace context) as a route is.
    Call it after the exception handlers are in place, before the app serves."""
    routes = plain_routes(routers, endpoints)
    app.user_middleware.append(
        Middleware(PlainRoutes, routes=routes, handlers=app.exception_handlers)
    )
