"""The operations API of a gateway without a cluster: what needs one says why it is
unavailable; nothing is invented."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from modelserve.testbed.platform import RunningService

pytestmark = [pytest.mark.postgres]


def test_without_a_cluster_the_cluster_facts_are_unavailable(
    start_gateway: Callable[..., RunningService], as_user: Callable[..., httpx.Client]
) -> None:
    gateway = start_gateway()
    user = as_user(gateway, "alice")
    admin = as_user(gateway, "root", roles=("admin",))

    info = user.get("/info")
    assert info.status_code == 200, info.text
    assert info.json()["cluster"]["connected"] is False

    version = user.get("/version")
    assert version.status_code == 200, version.text
    body = version.json()
    assert body["kubernetes_version"] == "unavailable"
    assert body["runtime_images"] == "unavailable"
    assert "not connected to a cluster" in body["unavailable"]["kubernetes_version"]
    assert body["platform_version"]

    system = admin.get("/system")
    assert system.status_code == 200, system.text
    body = system.json()
    assert body["nodes"] == []
    assert "not connected to a cluster" in body["unavailable"]["nodes"]
    assert body["platform"]["gateway_process"]["pid"] == gateway.process.pid
    assert body["platform"]["pods"] is None

    logs = admin.get("/logs/gateway")
    assert logs.status_code == 503
    assert logs.json()["error"]["code"] == "no_cluster"

    assert httpx.get(f"{gateway.url}/info", timeout=10).status_code == 401
