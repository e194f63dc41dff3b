"""Routes called straight from ASGI (`plain_routes`): they answer as FastAPI's routing
would, errors included, and refuse endpoints whose parameters FastAPI would resolve.
The gateway's own use of them is what every proxy test exercises (tests/gateway/
test_proxy.py and the others reach /v1/chat/completions through them)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from modelserve.gateway.plain_routes import install_plain_routes, plain_routes

router = APIRouter(prefix="/v1")
# What FastAPI's request wrapper puts in the scope of a route it calls.
FASTAPI_MARK = "fastapi_inner_astack"
seen: list[dict[str, Any]] = []


@router.post("/echo")
async def echo(request: Request) -> Response:
    scope = request.scope
    seen.append(
        {"route": scope["route"].path_format, "body": await request.body(), "by": by(scope)}
    )
    return JSONResponse({"echo": (await request.body()).decode()})


@router.post("/refuse")
async def refuse(request: Request) -> Response:
    raise HTTPException(418, "not here")


@router.post("/fail")
async def fail(request: Request) -> Response:
    raise RuntimeError("a bug")


@router.post("/query")
async def with_query(request: Request, limit: int = 1) -> Response:
    return JSONResponse({"limit": limit, "by": by(request.scope)})


@router.post("/items/{item}")
async def with_path(request: Request, item: str) -> Response:
    return JSONResponse({"item": item})


def by(scope: MutableMapping[str, Any]) -> str:
    return "fastapi" if FASTAPI_MARK in scope else "plain"


def app_with(endpoints: list[Any]) -> FastAPI:
    app = FastAPI()
    app.include_router(router)

    async def teapot(_: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return JSONResponse({"handled": error.detail}, status_code=error.status_code)

    async def internal(_: Request, __: Exception) -> Response:
        return JSONResponse({"internal": True}, status_code=500)

    app.add_exception_handler(HTTPException, teapot)
    app.add_exception_handler(Exception, internal)
    install_plain_routes(app, [router], endpoints)
    return app


def ask(app: FastAPI, *calls: tuple[str, str, bytes], root_path: str = "") -> list[httpx.Response]:
    """The app's answers to (method, path, body) calls, in order, served under
    `root_path` (a server's --root-path)."""

    async def run() -> list[httpx.Response]:
        # The outermost middleware answers 500 and raises again, as under uvicorn.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            return [await http.request(method, path, content=body) for method, path, body in calls]

    return asyncio.run(run())


def test_a_plain_route_answers_with_its_route_in_the_scope() -> None:
    seen.clear()
    [answer] = ask(app_with([echo]), ("POST", "/v1/echo", b"hi"))
    assert answer.status_code == 200
    assert answer.json() == {"echo": "hi"}
    assert seen == [{"route": "/v1/echo", "body": b"hi", "by": "plain"}]


def test_other_methods_and_paths_go_to_fastapi() -> None:
    wrong_method, unknown, not_plain = ask(
        app_with([echo]),
        ("GET", "/v1/echo", b""),
        ("POST", "/v1/echo/more", b""),
        ("POST", "/v1/query?limit=3", b""),
    )
    assert wrong_method.status_code == 405
    assert unknown.status_code == 404
    assert not_plain.json() == {"limit": 3, "by": "fastapi"}


def test_errors_go_to_the_apps_handlers() -> None:
    refused, failed = ask(
        app_with([refuse, fail]), ("POST", "/v1/refuse", b""), ("POST", "/v1/fail", b"")
    )
    assert (refused.status_code, refused.json()) == (418, {"handled": "not here"})
    # The handler of Exception runs in the outermost middleware, as for any route.
    assert (failed.status_code, failed.json()) == (500, {"internal": True})


def test_the_apps_root_path_is_not_part_of_the_route() -> None:
    seen.clear()
    [answer] = ask(app_with([echo]), ("POST", "/gateway/v1/echo", b"rooted"), root_path="/gateway")
    assert answer.json() == {"echo": "rooted"}
    assert seen == [{"route": "/v1/echo", "body": b"rooted", "by": "plain"}]


@pytest.mark.parametrize("endpoint", [with_query, with_path])
def test_an_endpoint_that_takes_more_than_the_request_is_refused(endpoint: Any) -> None:
    with pytest.raises(ValueError, match="takes the request alone"):
        plain_routes([router], [endpoint])


def test_an_endpoint_of_no_router_is_refused() -> None:
    async def stray(request: Request) -> Response:
        return Response()

    with pytest.raises(ValueError, match="stray"):
        plain_routes([router], [echo, stray])
