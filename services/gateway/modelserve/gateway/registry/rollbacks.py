"""Automatic rollbacks into the registry's history.

The operator rolls a server back by itself when a new version does not become Ready
(status.rollout, phase RolledBack): it needs no gateway for that. What it cannot do is
write the registry (it holds no token the download service accepts). Every gateway
replica sees the rollback in its watch of the ModelServes and reports it
(`POST /models/rollbacks`, with its service token); the registry records it once per
rollout and server, and moves the name's active version back if it still names the
failed one. A report that fails is tried again at the next change of the route table,
or within `RETRY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from modelserve.common.errors import ApiError
from modelserve.common.rollouts import Phase
from modelserve.common.supervision import start_supervised
from modelserve.gateway.registry.client import RegistryClient
from modelserve.gateway.routing import RouteTable, Target

logger = logging.getLogger(__name__)
RETRY_SECONDS = 30.0
# Answers that asking again would not change (401 and 403 might: a token being renewed).
REFUSED = (400, 404, 409, 422)


def rollback_report(target: Target) -> dict[str, Any] | None:
    """The report of `target`'s rollback, if it was rolled back from a change that the
    registry made (a numeric rollout id and a known failed version); else None."""
    rollout = target.rollout
    if rollout is None or rollout.phase is not Phase.ROLLED_BACK:
        return None
    if not rollout.id.isdigit() or rollout.target.version is None:
        return None  # a change made by hand (kubectl): not one of the registry's
    # The name's pointer goes back to where the set_active found it (restored_id None:
    # the registry takes its from_id); the version this server runs again is in the message.
    return {
        "rollout_id": int(rollout.id),
        "server": f"{target.namespace}/{target.name}",
        "server_uid": target.server_id,
        "failed_id": rollout.target.version,
        "restored_id": None,
        "reason": rollout.reason or None,
        "message": f"the server runs {rollout.source} again: {rollout.message}",
        # Whose it is: only the platform's and the set_active's actor's move the name back.
        "server_owner": target.owner,
        "platform_server": target.platform,
    }


class RollbackRecorder:
    """Reports each rollback this gateway sees, once per process (the registry keeps it
    once across every replica)."""

    def __init__(self, routes: RouteTable, registry: RegistryClient) -> None:
        self._routes = routes
        self._registry = registry
        self._reported: set[tuple[int, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = start_supervised("rollback-recorder", self.run)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        while True:
            waiting = self._routes.changes.wait()
            await self.report_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiting, RETRY_SECONDS)

    async def report_all(self) -> None:
        seen: set[tuple[int, str]] = set()
        for target in self._routes.servers():
            report = rollback_report(target)
            if report is None:
                continue
            key = (report["rollout_id"], report["server_uid"])
            seen.add(key)
            if key in self._reported:
                continue
            try:
                await self._registry.report_rollback(report)
            except ApiError as error:
                if error.status_code in REFUSED:
                    # Refused, not failed (no such change in the registry, e.g. an id
                    # written by hand): asking again would get the same answer.
                    logger.warning("the registry refused the rollback of %s: %s",
                                   report["server"], error.detail)  # fmt: skip
                    self._reported.add(key)
                    continue
                logger.warning("the rollback of %s is not in the registry yet: %s",
                               report["server"], error.detail)  # fmt: skip
                continue
            self._reported.add(key)
            logger.info(
                "recorded the rollback of %s from %s", report["server"], report["failed_id"]
            )
        # Only rollbacks still shown by a server are remembered: a new rollout of a server
        # replaces its key (the registry keeps each one once anyway).
        self._reported &= seen
