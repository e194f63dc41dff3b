"""The gateway's FastAPI application.

Each component opens in the lifespan, in order, and closes in reverse; routes reach
them through the aliases of `deps`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from modelserve.common.readiness import Check, database_check, http_check, problem_check
from modelserve.common.request_ids import carry_request_id
from modelserve.common.service import create_service_app
from modelserve.common.tokens import TokenSigner
from modelserve.common.trace_context import TraceContext, open_tracer
from modelserve.gateway.arena import routes as arena_routes
from modelserve.gateway.arena.battles import Arena
from modelserve.gateway.arena.store import ArenaStore
from modelserve.gateway.contracts import ContractClient
from modelserve.gateway.discovery import Discovery
from modelserve.gateway.gpus import routes as gpu_routes
from modelserve.gateway.gpus.cluster import GpuCluster
from modelserve.gateway.identity import Identity
from modelserve.gateway.jobs import routes as jobs_routes
from modelserve.gateway.jobs.client import JobsClient
from modelserve.gateway.kube import load_api_client
from modelserve.gateway.kubeservers import ServerStore, served_namespaces
from modelserve.gateway.openai_errors import install_openai_errors
from modelserve.gateway.operations import routes as operations_routes
from modelserve.gateway.plain_routes import install_plain_routes
from modelserve.gateway.proxy_components import open_proxy
from modelserve.gateway.registry import activation
from modelserve.gateway.registry import downloads as download_routes
from modelserve.gateway.registry import routes as registry_routes
from modelserve.gateway.registry.client import RegistryClient
from modelserve.gateway.registry.rollbacks import RollbackRecorder
from modelserve.gateway.routes import (
    auth,
    configure,
    health,
    metrics,
    models,
    openai,
    server_openai,
    servers,
    users,
    verify,
)
from modelserve.gateway.settings import GatewaySettings
from modelserve.gateway.ui import install_ui
from modelserve.gateway.usage_view import routes as usage_routes


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings
    async with contextlib.AsyncExitStack() as stack:
        # The spans still to be exported go out last, once every request has ended.
        stack.callback(app.state.tracer.close)
        # Calls to the platform's own services (contract, download, a JWKS): not the
        # proxy's client, which has its own limits.
        # They carry the id of the request they are made for (`request_ids`).
        services = await stack.enter_async_context(
            httpx.AsyncClient(timeout=10.0, event_hooks={"request": [carry_request_id]})
        )
        # Kubernetes (None without a cluster): servers are ModelServes, routes come from them.
        kube = load_api_client(settings)
        if kube is not None:
            stack.callback(kube.close)
        app.state.kube = kube
        # The cluster's GPUs, the node agents' reports and the power profile (None
        # without a cluster).
        app.state.gpus = (
            GpuCluster(kube, settings.load_namespace, settings.gpu_cache_seconds)
            if kube is not None
            else None
        )
        # ModelServes in the namespaces this gateway serves (None without a cluster).
        app.state.servers = (
            ServerStore(kube, served_namespaces(settings.watch_namespaces, settings.namespace))
            if kube is not None
            else None
        )
        # The one signer of the gateway's tokens: users', and its own as a service.
        signer = TokenSigner.from_settings(settings.tokens)
        # components: each opens here and pushes its close on `stack`.
        # Users, teams and API keys (PostgreSQL, migrated here), and the verifier of every
        # token the gateway takes (API keys and revocations from that database).
        identity = await Identity.open(settings, signer, services)
        stack.push_async_callback(identity.close)
        app.state.identity = identity
        app.state.verifier = identity.verifier
        # The one client of the download service: model records with the gateway's own
        # service token, the registry as the caller. Serve decisions, with the service token.
        app.state.registry = RegistryClient(settings.download_url, services, signer)
        # The one client of the jobs service: its routes passed through as the caller.
        jobs_http = await stack.enter_async_context(
            httpx.AsyncClient(
                limits=httpx.Limits(max_connections=settings.jobs_connections),
                event_hooks={"request": [carry_request_id]},
            )
        )
        app.state.jobs = JobsClient(settings.jobs_url, jobs_http, settings.jobs_timeout_seconds)
        app.state.contracts = (
            ContractClient(settings.contract_url, services, signer)
            if settings.contract_url
            else None
        )
        # The OpenAI proxy: routes from watching ModelServes, the pool of connections to
        # model servers, metrics, inference accounting.
        proxy, discovery = await open_proxy(settings, kube, signer, stack)
        app.state.proxy = proxy
        app.state.routes = proxy.table
        app.state.metrics = proxy.metrics
        identity.metrics.register(proxy.metrics.registry)
        # The arena: battles through the proxy as the caller, votes in the gateway's database.
        # Its leaderboard fits are small: one BLAS thread (more only contend for the cores).
        threadpool_limits(limits=1, user_api="blas")
        app.state.arena = Arena(ArenaStore(identity.pool), proxy, app.state.contracts, settings)
        if kube is not None and app.state.registry.configured:
            # Rollbacks the operator made by itself, into the registry's history.
            recorder = RollbackRecorder(proxy.table, app.state.registry)
            recorder.start()
            stack.push_async_callback(recorder.close)
        app.state.readiness = readiness_checks(settings, identity, discovery, services)
        yield


def readiness_checks(
    settings: GatewaySettings,
    identity: Identity,
    discovery: Discovery | None,
    services: httpx.AsyncClient,
) -> dict[str, Check]:
    """What /ready asks: the database, the route table following the cluster (with
    one), the contract service answering (with one: requests are refused without it)."""
    checks = {"database": database_check(identity.pool)}
    if discovery is not None:
        checks["discovery"] = problem_check(discovery.problem)
    if settings.contract_url:
        health = f"{settings.contract_url.rstrip('/')}/health"
        checks["contract"] = http_check(services, health, "the contract service")
    return checks


def create_app(settings: GatewaySettings) -> FastAPI:
    # The gateway's /health also says which models are loaded (with the common one's
    # status, service and version fields).
    app = create_service_app("gateway", settings, own_health=True, lifespan=lifespan)
    # W3C trace context: each request's span, carried to the model servers and recorded
    # with OpenTelemetry's SDK when a collector is named (docs/gateway.md#tracing).
    app.state.tracer = open_tracer(settings.otlp_endpoint, "modelserve-gateway")
    app.add_middleware(TraceContext, tracer=app.state.tracer)
    app.include_router(health.router)
    # The routes every request through the proxy takes come first: a request is matched
    # against each route in order (a few µs a route in FastAPI's included routers), and
    # the ~70 routes that came before them cost a chat completion about 0.25 ms of CPU.
    # (A POST of /v1/chat/completions and the other OpenAI paths is not matched at all:
    # `install_plain_routes` below calls its endpoint by its path; a server's own paths
    # and /v1/models still are.)
    # No other path overlaps theirs (/v1/models…, /v1/chat/completions, /v1/completions,
    # /v1/embeddings, /tokenize, /detokenize, /{uuid}/v1/…, /auth/verify), so the order
    # changes which route answers no request (tests/gateway/test_route_order.py).
    app.include_router(openai.router)
    app.include_router(openai.root_router)
    # A server's own paths (/{server_id}/v1/…): only a UUID followed by /v1 matches them,
    # so they shadow none of the gateway's paths.
    app.include_router(server_openai.router)
    # Traefik asks it before each request of a server's own route.
    app.include_router(verify.router)
    # routers: one per resource.
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(models.router)
    app.include_router(registry_routes.router)
    app.include_router(activation.router)
    app.include_router(download_routes.router)
    app.include_router(servers.router)
    app.include_router(configure.router)
    app.include_router(jobs_routes.router)
    app.include_router(usage_routes.router)
    app.include_router(arena_routes.router)
    app.include_router(metrics.router)
    app.include_router(operations_routes.router)
    app.include_router(gpu_routes.router)
    # The web UI's build under /ui (docs/ui.md).
    install_ui(app, settings.ui_dir)
    # Errors under /v1 and /{server_id}/v1 in OpenAI's shape, the platform's elsewhere.
    install_openai_errors(app)
    # The proxy's routes without FastAPI's routing: a dictionary lookup and the endpoint
    # (`plain_routes`); last, once their routes and the error handlers are in place.
    install_plain_routes(app, (openai.router, openai.root_router), openai.PLAIN)
    return app
