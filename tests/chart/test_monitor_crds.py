"""The chart's ServiceMonitors and PodMonitor against the Prometheus Operator's own CRDs:
the test bed's real API server, with those CRDs installed, validates each monitor the chart
renders against their schemas (a server-side dry run writes nothing)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelserve.testbed.helm import Helm
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.prometheus_operator import install_monitor_crds

RELEASE = "modelserve"
MONITORS = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "podMonitor": {"enabled": True, "labels": {"release": "prom"}},
    },
    "serverNamespaces": ["default"],
}


def _monitors(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("ServiceMonitor", "PodMonitor")]


@pytest.mark.kube
def test_the_api_server_accepts_every_monitor(
    offline_helm: Helm, crds: KubeCluster, namespace: str
) -> None:
    install_monitor_crds(crds)
    monitors = _monitors(offline_helm.template(RELEASE, namespace, MONITORS))
    names = {(o["kind"], o["metadata"]["name"]) for o in monitors}
    assert names == {
        *(
            ("ServiceMonitor", f"{RELEASE}-{component}")
            for component in ("gateway", "jobs", "contract", "download", "operator")
        ),
        ("PodMonitor", f"{RELEASE}-model-servers"),
    }
    for monitor in monitors:
        # --validate=Strict: a field the schema does not know is an error, not dropped.
        out = crds.kubectl(
            "apply", "--dry-run=server", "--validate=strict", stdin=json.dumps(monitor)
        )
        kind = monitor["kind"].lower()
        created = f"{kind}.monitoring.coreos.com/{monitor['metadata']['name']} created"
        assert created in out, out


@pytest.mark.kube
def test_the_api_server_refuses_a_monitor_its_schema_forbids(
    offline_helm: Helm, crds: KubeCluster, namespace: str
) -> None:
    """The check has teeth: the same ServiceMonitor with a scheme the CRD does not allow
    is refused."""
    install_monitor_crds(crds)
    (monitor, *_) = [
        o
        for o in offline_helm.template(RELEASE, namespace, MONITORS)
        if o["kind"] == "ServiceMonitor"
    ]
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"
    with pytest.raises(RuntimeError, match="scheme"):
        crds.kubectl("apply", "--dry-run=server", stdin=json.dumps(monitor))
