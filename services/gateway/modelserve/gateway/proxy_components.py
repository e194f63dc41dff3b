"""The OpenAI proxy's components, opened together at start-up and closed at shutdown:
metrics, the route table and the discovery that fills it (none without a cluster), the
pool of connections to model servers and the dispatcher that sends each request to an
endpoint, dynamic loading (the load book, its report to the operator, the holder of
requests for sleeping models), and (with a contract service) accounting."""

from __future__ import annotations

import contextlib
import os
import uuid

from kubernetes import client as k8s

from modelserve.common.settings import split
from modelserve.common.tokens import TokenSigner
from modelserve.gateway.accounting import Accounting, usage_sender
from modelserve.gateway.discovery import Discovery
from modelserve.gateway.dispatch import Dispatcher
from modelserve.gateway.kubeservers import served_namespaces
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.loading.holding import Holder
from modelserve.gateway.loading.reporter import LoadReporter, default_replica_id
from modelserve.gateway.media_urls import MediaRules, MediaUrls
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.proxy import Proxy
from modelserve.gateway.quota.client import LeaseClient, ServiceToken
from modelserve.gateway.quota.ledger import QuotaLedger
from modelserve.gateway.routing import RouteTable
from modelserve.gateway.scaled import Scaler
from modelserve.gateway.settings import GatewaySettings
from modelserve.gateway.upstream import UpstreamClient
from modelserve.gateway.usage_outbox import OutboxSettings, UsageOutbox

# Connections to the contract service: POST /leases (grants a request may wait for,
# renewals), POST /usage/batch.
CONTRACT_CONNECTIONS = 64


async def open_proxy(
    settings: GatewaySettings,
    kube: k8s.ApiClient | None,
    signer: TokenSigner,
    stack: contextlib.AsyncExitStack,
) -> tuple[Proxy, Discovery | None]:
    """The proxy, and the discovery that fills its table (None without a cluster), whose
    state readiness reports."""
    metrics = GatewayMetrics()
    platform = split(settings.platform_namespaces)
    table = RouteTable(platform)
    # This replica's requests per server, which the operator reads from its Lease.
    book = LoadBook()
    discovery = None
    if kube is not None:
        reporter = LoadReporter(
            kube,
            table,
            book,
            metrics,
            replica=settings.replica_id or default_replica_id(),
            namespace=settings.load_namespace,
            period=settings.load_report_seconds,
            duration=settings.load_lease_seconds,
        )
        await reporter.start()
        stack.push_async_callback(reporter.close)  # after discovery closed
        namespaces = served_namespaces(settings.watch_namespaces, settings.namespace)
        discovery = Discovery(
            kube,
            table,
            # The platform's servers are routed to wherever the gateway serves.
            namespaces=None if namespaces is None else sorted({*namespaces, *platform}),
            resync_seconds=settings.discovery_resync_seconds,
        )
        await discovery.start()
        stack.push_async_callback(discovery.close)
    else:
        table.synced = True  # nothing to load: no model is served
    upstream = UpstreamClient(
        connections=settings.upstream_connections,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
    )
    stack.push_async_callback(upstream.close)
    accounting = None
    if settings.contract_url:
        contract_http = UpstreamClient(
            connections=CONTRACT_CONNECTIONS,
            connect_timeout=settings.contract_timeout,
            read_timeout=settings.contract_timeout,
        )
        stack.push_async_callback(contract_http.close)
        token = ServiceToken(signer, settings.tokens.expiry_hours * 3600)
        # Usage waits in the outbox (this database) until the contract service has it.
        outbox = await UsageOutbox.open(
            settings.database_url.get_secret_value(),
            usage_sender(settings.contract_url, contract_http, token),
            metrics,
            outbox_settings(settings),
        )
        stack.push_async_callback(outbox.close)  # before its client closes
        # Inference decided here, from quota leased to this process.
        ledger = QuotaLedger(
            LeaseClient(settings.contract_url, contract_http, token, quota_holder(settings)),
            metrics,
            refresh_seconds=settings.quota_refresh_seconds,
            default_tokens=settings.default_reserved_tokens,
        )
        ledger.start()
        stack.push_async_callback(ledger.close)  # gives its leases back, before the client
        accounting = Accounting(ledger, outbox)
    dispatcher = Dispatcher(table, upstream, metrics, book)
    holder = Holder(
        table,
        book,
        metrics,
        queue=settings.hold_queue,
        timeout=settings.hold_timeout_seconds,
        keepalive=settings.hold_keepalive_seconds,
    )
    scaler = Scaler(
        table,
        dispatcher,
        metrics,
        accounting,
        max_concurrency=settings.scaling_concurrency,
        keepalive_seconds=settings.scaling_keepalive_seconds,
        reserved_tokens=settings.scaling_reserved_tokens,
        holder=holder,
    )
    proxy = Proxy(
        table,
        dispatcher,
        metrics,
        max_body_bytes=settings.max_body_bytes,
        inject_stream_usage=settings.inject_stream_usage,
        media=MediaUrls(MediaRules.of(settings.remote_media, settings.media_url_hosts)),
        fanout_concurrency=settings.fanout_concurrency,
        accounting=accounting,
        scaler=scaler,
        holder=holder,
    )
    return proxy, discovery


def quota_holder(settings: GatewaySettings) -> str:
    """Who holds this process's leases at the contract service: the replica, this
    process (one of the replica's workers) and a random part (a process started again
    with the same id holds none of the old one's leases)."""
    if settings.replica_id:
        return f"{settings.replica_id[:180]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return default_replica_id()


def outbox_settings(settings: GatewaySettings) -> OutboxSettings:
    return OutboxSettings(
        flush_seconds=settings.usage_flush_seconds,
        retry_seconds=settings.usage_retry_seconds,
        retry_max_seconds=settings.usage_retry_max_seconds,
        batch_size=settings.usage_batch_size,
        lease_seconds=settings.usage_lease_seconds,
        queue_size=settings.usage_queue_size,
    )
