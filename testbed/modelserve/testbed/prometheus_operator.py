"""The Prometheus Operator's CRDs for ServiceMonitor and PodMonitor on the test bed, so that
the API server itself checks the monitors the chart makes against their schemas.

They come from the Go module github.com/prometheus-operator/prometheus-operator (its
example/prometheus-operator-crd/ folder), fetched with `go mod download` through the module
proxy, checked against a pinned sum and kept in the test bed's cache by version, as the
Gateway API's CRDs are (gateway_api.py). The module's smaller pkg/apis/monitoring carries
the Go types only, no CRD. v0.85.0 is the newest version the module proxy serves of the
whole module.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

from modelserve.testbed.cache import cache_root
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.processes import run

PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
PROMETHEUS_OPERATOR_SUM = "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s="
CRD_FOLDER = "example/prometheus-operator-crd"
# The kinds the chart makes (metrics.serviceMonitor, metrics.podMonitor); the module's
# other CRDs (Prometheus, Alertmanager, rules, ...) have no use here.
MONITOR_CRDS = (
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_podmonitors.yaml",
)


def _module_folder() -> Path:
    """The Prometheus Operator's module in Go's module cache, checked against the pinned sum."""
    with tempfile.TemporaryDirectory() as empty:
        # An empty folder and -mod=mod: no go.mod is needed and none is read.
        answer = run(
            [
                "go",
                "mod",
                "download",
                "-json",
                f"{PROMETHEUS_OPERATOR_MODULE}@{PROMETHEUS_OPERATOR_VERSION}",
            ],
            cwd=Path(empty),
            env={"GOFLAGS": "-mod=mod"},
        )
    found = json.loads(answer)
    if found.get("Sum") != PROMETHEUS_OPERATOR_SUM:
        raise RuntimeError(
            f"{PROMETHEUS_OPERATOR_MODULE}@{PROMETHEUS_OPERATOR_VERSION} has sum "
            f"{found.get('Sum')!r}, not the pinned {PROMETHEUS_OPERATOR_SUM}"
        )
    return Path(found["Dir"])


@functools.cache
def monitor_crds() -> Path:
    """A folder of the ServiceMonitor and PodMonitor CRDs, fetched once per version into
    the cache."""
    target = cache_root() / "crds" / f"prometheus-operator-{PROMETHEUS_OPERATOR_VERSION}"
    if (target / ".complete").exists():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    source = _module_folder() / CRD_FOLDER
    for name in MONITOR_CRDS:
        shutil.copyfile(source / name, staging / name)
    (staging / ".complete").write_text(
        f"{PROMETHEUS_OPERATOR_MODULE}@{PROMETHEUS_OPERATOR_VERSION}\n"
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def install_monitor_crds(cluster: KubeCluster) -> None:
    """The ServiceMonitor and PodMonitor CRDs in `cluster`, established. Server-side, as
    the Prometheus Operator's own install does: their schemas are too large for a
    client-side apply's annotation."""
    files = ["-f", str(monitor_crds())]
    cluster.kubectl("apply", "--server-side", *files)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", *files)
