"""The server ledger kept in step with the cluster: what ModelServes really exist.

The webhook records servers as they are admitted; this loop lists the cluster's
ModelServes now and then and corrects the ledger: servers deleted while the webhook was
not asked (its deletions fail open), servers admitted but never created, replica counts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import ValidationError

from modelserve.common.database import DatabaseUnavailable
from modelserve.common.modelserve import GROUP, OWNER_LABEL, PLURAL, TEAM_LABEL, VERSION, ModelServe
from modelserve.contract.store import Store
from modelserve.contract.tables import Server

logger = logging.getLogger(__name__)


def load_api_client() -> k8s.ApiClient:
    """In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)
    return k8s.ApiClient(configuration)


def server_of(body: dict[str, Any]) -> Server | None:
    """A listed ModelServe as a ledger row; its owner only from labels (the ledger's own
    record, made when the webhook admitted it, wins over this)."""
    try:
        ms = ModelServe.from_body(body)
    except ValidationError:
        return None
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return None  # going: its DELETE already took it out of the ledger
    labels = (body.get("metadata") or {}).get("labels") or {}
    return Server(
        namespace=ms.namespace,
        name=ms.name,
        owner=labels.get(OWNER_LABEL, ""),
        team=labels.get(TEAM_LABEL, ""),
        replicas=ms.spec.replicas,
        gpus=ms.spec.resources.gpus,
        model=ms.served_name,
        runtime=ms.spec.runtime.value,
    )


class Inventory:
    def __init__(self, store: Store, api: k8s.ApiClient, interval: float, grace: float) -> None:
        self._store = store
        self._api = k8s.CustomObjectsApi(api)
        self._interval = interval
        self._grace = grace

    def _list(self) -> list[Server]:
        listing = self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        servers = (server_of(item) for item in listing.get("items", []))
        return [server for server in servers if server is not None]

    async def sync(self) -> tuple[int, int]:
        running = await asyncio.to_thread(self._list)
        return await self._store.sync_servers(running, self._grace)

    async def run(self) -> None:
        while True:
            try:
                added, dropped = await self.sync()
                if added or dropped:
                    logger.info("server ledger: %d added, %d dropped", added, dropped)
            except (DatabaseUnavailable, k8s.ApiException, OSError) as error:
                logger.warning("server ledger not synced: %s", error)
            await asyncio.sleep(self._interval)
