"""The gateway matches a request against its routes in order, and puts the proxy's routes
(and /auth/verify) first because that order costs every proxied request less (app.py).
That is only safe while no other route matches a path of theirs, nor they a path of
another route: then the order changes which route answers no request. Checked here on
the app as built, with one sample path per route template."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

from starlette.routing import BaseRoute

from modelserve.common.tokens import TokenSettings
from modelserve.gateway.app import create_app
from modelserve.gateway.routes import openai, server_openai, verify
from modelserve.gateway.settings import GatewaySettings

FIRST = (openai.router, openai.root_router, server_openai.router, verify.router)
_PARAM = re.compile(r"{([^}:]+)(?::([a-z]+))?}")
_SAMPLES = {"uuid": str(uuid.UUID(int=7)), "path": "a/b", "int": "1", "float": "1.5"}


def _routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route of `routes`, those of included routers (at any depth) one by one."""
    for route in routes:
        # FastAPI keeps an included router whole (its `original_router`).
        included = getattr(route, "original_router", None)
        if included is None:
            yield route
        else:
            yield from _routes(included.routes)


def _sample(path: str) -> str:
    """A path the template `path` matches: each parameter filled for its convertor."""
    return _PARAM.sub(lambda m: _SAMPLES.get(m.group(2) or "", "x1"), path)


def _regex(route: BaseRoute) -> re.Pattern[str]:
    pattern: re.Pattern[str] = getattr(route, "path_regex")  # noqa: B009 - every route has one
    return pattern


def test_the_first_routes_share_no_path_with_the_others() -> None:
    app = create_app(GatewaySettings(tokens=TokenSettings(development=True)))
    first_ids = {id(route) for router in FIRST for route in _routes(router.routes)}
    routes = list(_routes(app.router.routes))
    first = [route for route in routes if id(route) in first_ids]
    others = [route for route in routes if id(route) not in first_ids]
    assert len(first) == len(first_ids), "a router of FIRST is not in the app"
    assert len(others) > 50
    for one in first:
        for other in others:
            for a, b in ((one, other), (other, one)):
                sample = _sample(getattr(a, "path"))  # noqa: B009
                assert _regex(a).match(sample), f"{sample} is no sample of {a}"
                assert not _regex(b).match(sample), f"{sample} ({a}) is also a path of {b}"


def test_the_proxy_routes_come_first() -> None:
    """/v1/chat/completions is matched after at most the few routes every FastAPI app of
    the platform starts with (/openapi.json, /docs, /redoc, /ready) and /health."""
    app = create_app(GatewaySettings(tokens=TokenSettings(development=True)))
    routers = [getattr(route, "original_router", None) for route in app.router.routes]
    assert routers.index(openai.router) <= 6
    assert routers.index(openai.root_router) == routers.index(openai.router) + 1
    assert routers.index(server_openai.router) == routers.index(openai.router) + 2
