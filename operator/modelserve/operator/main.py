"""`modelserve-operator`: run the kopf operator."""

from __future__ import annotations

import sys

import kopf
from pydantic import ValidationError

from modelserve.operator.handlers import build_registry
from modelserve.operator.settings import OperatorSettings


def load_settings() -> OperatorSettings:
    try:
        return OperatorSettings()
    except ValidationError as error:
        # A configuration mistake (an HTTPRoute without a Gateway, say): its message, not a
        # traceback.
        problems = "\n".join(
            f"  {'.'.join(map(str, problem['loc'])) or error.title}: {problem['msg']}"
            for problem in error.errors()
        )
        sys.exit(f"modelserve-operator: invalid settings:\n{problems}")


def main() -> None:
    settings = load_settings()
    namespaces = settings.namespace_list()
    kopf.configure(verbose=False)
    kopf.run(
        registry=build_registry(settings),
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{settings.health_host}:{settings.health_port}/healthz",
    )
