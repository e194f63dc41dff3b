"""One namespace for the platform's own components, `modelserve`: the plain deploy
manifests, the Makefile, the chart's documented install, the services' defaults, the test
bed and the docs all name the same one (issue 14, item 10)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.contract.settings import ContractSettings
from modelserve.gateway.settings import GatewaySettings
from modelserve.nodeagent.settings import NodeAgentSettings
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed import platform

PLATFORM = "modelserve"
# Where ModelServes live by default: the contract's default namespaces and the platform's.
SERVER_NAMESPACES = {"default", "inference", PLATFORM}
DOCS = ("README.md", "docs/*.md", "charts/README.md", "charts/modelserve/README.md", "k3d/*.md")
# A platform namespace as the docs write it: `-n modelserve-x`, `--namespace modelserve`,
# `namespace: modelserve`, the namespace `modelserve`.
NAMED = re.compile(
    r"(?:-n|--namespace[ =]|namespace:|namespace [`\"'])\s*[`\"']?(modelserve[a-z0-9-]*)"
)


def _manifests(root: Path) -> list[Path]:
    found = sorted(root.glob("operator/deploy/*.yaml")) + sorted(
        root.glob("services/*/deploy/*.yaml")
    )
    assert len(found) >= 3
    return found


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_deploy_manifests_run_every_component_in_the_one_namespace(root: Path) -> None:
    accounts = []
    for path in _manifests(root):
        for doc in _documents(path):
            meta = doc["metadata"]
            if doc["kind"] == "ServiceAccount":
                accounts.append(meta["name"])
                assert meta["namespace"] == PLATFORM, path
            for subject in doc.get("subjects", []):
                assert subject["namespace"] == PLATFORM, (path, meta["name"])
            if doc["kind"] in ("Role", "RoleBinding"):
                assert meta["namespace"] in SERVER_NAMESPACES, (path, meta)
    assert sorted(accounts) == [
        "modelserve-contract",
        "modelserve-gateway",
        "modelserve-nodeagent",
        "modelserve-operator",
    ]


def test_the_makefile_and_the_chart_s_install_use_it(root: Path) -> None:
    assert f"NAMESPACE ?= {PLATFORM}\n" in (root / "Makefile").read_text()
    values = (root / "charts" / "modelserve" / "values.yaml").read_text()
    assert f"-n {PLATFORM} --create-namespace" in values
    assert platform.OPERATOR_NAMESPACE == platform.GATEWAY_NAMESPACE == PLATFORM
    assert platform.CONTRACT_NAMESPACE == PLATFORM


@pytest.mark.parametrize(
    ("settings", "field", "expected"),
    [
        (ContractSettings, "delegating_users", f"system:serviceaccount:{PLATFORM}:"),
        (ContractSettings, "platform_namespaces", PLATFORM),
        (GatewaySettings, "platform_namespaces", PLATFORM),
        (NodeAgentSettings, "namespace", PLATFORM),
        (OperatorSettings, "route_service_namespace", PLATFORM),
        (OperatorSettings, "model_store_endpoint", f"modelserve-minio.{PLATFORM}.svc:"),
    ],
)
def test_the_services_defaults_name_it(settings: Any, field: str, expected: str) -> None:
    default = str(settings.model_fields[field].default)
    assert default.startswith(expected), (field, default)


def test_the_docs_name_no_other_platform_namespace(root: Path) -> None:
    named: dict[str, set[str]] = {}
    for pattern in DOCS:
        for path in root.glob(pattern):
            for name in NAMED.findall(path.read_text()):
                named.setdefault(name, set()).add(str(path.relative_to(root)))
    assert PLATFORM in named
    assert set(named) == {PLATFORM}, named
