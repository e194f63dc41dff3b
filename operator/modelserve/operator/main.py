"""`modelserve-operator`: run the kopf operator."""

from __future__ import annotations

import kopf

from modelserve.operator.handlers import build_registry
from modelserve.operator.settings import OperatorSettings


def main() -> None:
    settings = OperatorSettings()
    namespaces = settings.namespace_list()
    kopf.configure(verbose=False)
    kopf.run(
        registry=build_registry(settings),
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{settings.health_host}:{settings.health_port}/healthz",
    )
