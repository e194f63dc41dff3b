"""Per-server routes as Gateway API HTTPRoutes (OPERATOR_ROUTE_KIND=httproute): what the
builder makes, what the settings refuse, and, on the real API server with Gateway API's
own CRDs, a route that the CRD's schema accepts, owned by its ModelServe, pruned when the
kind is switched and garbage-collected with its ModelServe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from modelserve.common.modelserve import ModelServe
from modelserve.operator.children import build_children, wanted_children
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.gateway_api import install_gateway_api_crds
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningOperator, operator_kubeconfig, start_operator
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_operator import apply, get, manifest

SELECTOR = "llm.modelserve.io/modelserve={}"
GATEWAY = {
    "route_kind": "httproute",
    "route_gateway_name": "public",
    "route_gateway_namespace": "ingress",
    "route_gateway_section_name": "http",
}
UID = "6f1c2c0e-2b59-4f7e-9d55-2f0c0a6f4f10"


def _served() -> ModelServe:
    body = manifest("llamacpp-cpu.yaml")
    body["metadata"].update(namespace="team-a", uid=UID)
    return ModelServe.from_body(body)


def _route(settings: OperatorSettings) -> dict[str, Any]:
    (route,) = [c for c in build_children(_served(), settings) if c["kind"].endswith("Route")]
    return route


# --- the builder and the settings -------------------------------------------------------


def test_the_httproute_leads_the_server_prefix_to_the_gateway_service() -> None:
    route = _route(OperatorSettings.model_validate(GATEWAY))

    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "smollm2-cpu"
    assert route["metadata"]["namespace"] == "team-a"
    (owner,) = route["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelServe", UID, True)
    assert route["spec"] == {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "public",
                "namespace": "ingress",
                "sectionName": "http",
            }
        ],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": f"/{UID}/"}}],
                "backendRefs": [
                    {
                        "group": "",
                        "kind": "Service",
                        "name": "modelserve-gateway",
                        "namespace": "modelserve",
                        "port": 8200,
                    }
                ],
            }
        ],
    }


def test_the_gateway_namespace_and_listener_are_optional() -> None:
    route = _route(OperatorSettings(route_kind="httproute", route_gateway_name="public"))
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}
    ]


def test_the_httproute_matches_the_platform_route_s_host() -> None:
    route = _route(OperatorSettings.model_validate({**GATEWAY, "route_host": "llm.example.com"}))
    assert route["spec"]["hostnames"] == ["llm.example.com"]
    assert "hostnames" not in _route(OperatorSettings.model_validate(GATEWAY))["spec"]


def test_the_default_is_still_an_ingressroute() -> None:
    settings = OperatorSettings()
    assert settings.route_kind == "ingressroute"
    assert _route(settings)["kind"] == "IngressRoute"
    assert ("IngressRoute", "smollm2-cpu") in wanted_children(_served(), settings)
    httproute = OperatorSettings.model_validate(GATEWAY)
    wanted = wanted_children(_served(), httproute)
    assert ("HTTPRoute", "smollm2-cpu") in wanted
    assert ("IngressRoute", "smollm2-cpu") not in wanted


def test_a_traefik_service_backend_is_refused_with_httproutes() -> None:
    with pytest.raises(ValidationError, match="no Gateway API equivalent"):
        OperatorSettings.model_validate({**GATEWAY, "route_service": "modelserve-gateway@file"})
    # With IngressRoutes it stays allowed (the test bed's own setting).
    OperatorSettings(route_service="modelserve-gateway@file")


def test_an_httproute_needs_a_gateway() -> None:
    with pytest.raises(ValidationError, match="OPERATOR_ROUTE_GATEWAY_NAME"):
        OperatorSettings(route_kind="httproute")


def test_an_unknown_route_kind_is_refused() -> None:
    with pytest.raises(ValidationError):
        OperatorSettings.model_validate({"route_kind": "ingress"})


def test_the_operator_refuses_to_start_with_a_readable_message() -> None:
    """Not a traceback: the one line that says what to change."""
    env = {
        **os.environ,
        "OPERATOR_ROUTE_KIND": "httproute",
        "OPERATOR_ROUTE_GATEWAY_NAME": "public",
        "OPERATOR_ROUTE_SERVICE": "modelserve-gateway@file",
    }
    done = subprocess.run(
        [Path(sys.executable).parent / "modelserve-operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "modelserve-operator: invalid settings" in done.stderr
    assert "has no Gateway API equivalent" in done.stderr


# --- on the real API server -------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_api(crds: KubeCluster) -> KubeCluster:
    """The cluster with Gateway API's standard CRDs (from its Go module) as well."""
    install_gateway_api_crds(crds)
    return crds


def _settings(platform_store: MinioServer, crds: KubeCluster, kind: str) -> dict[str, str]:
    settings = {
        "OPERATOR_MODEL_STORE_ENDPOINT": crds.expose_to_pods(platform_store.port),
        "OPERATOR_MODEL_STORE_ACCESS_KEY": platform_store.access_key,
        "OPERATOR_MODEL_STORE_SECRET_KEY": platform_store.secret_key,
        "OPERATOR_ROUTE_KIND": kind,
    }
    if kind == "httproute":
        settings |= {
            "OPERATOR_ROUTE_GATEWAY_NAME": "public",
            "OPERATOR_ROUTE_GATEWAY_NAMESPACE": "ingress",
        }
    return settings


@pytest.fixture
def run_operator(
    gateway_api: KubeCluster, testbed_dir: Path, platform_store: MinioServer, smollm2_uri: str
) -> Iterator[Any]:
    """Starts the operator with one route kind; the one running before is stopped first,
    so that only one reconciles at a time (as a rollout of a new setting would)."""
    running: list[RunningOperator] = []

    def start(kind: str) -> RunningOperator:
        for operator in running:
            operator.stop()
        operator = start_operator(
            operator_kubeconfig(gateway_api),
            testbed_dir / "logs" / f"httproute-{kind}",
            _settings(platform_store, gateway_api, kind),
        )
        running.append(operator)
        return operator

    yield start
    for operator in running:
        operator.stop()


def _routes(kube: KubeCluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    found = get(kube, namespace, "ingressroutes,httproutes", "-l", SELECTOR.format(name))
    return {item["kind"]: item for item in found["items"]}


def _server(kube: KubeCluster, namespace: str) -> tuple[str, str]:
    """A ModelServe with no replica (its routes are what is looked at): name and uid."""
    name = apply(kube, namespace, manifest("llamacpp-cpu.yaml", spec__replicas=0))
    return name, get(kube, namespace, "ms", name)["metadata"]["uid"]


@pytest.mark.kube
@pytest.mark.minio
def test_a_modelserve_gets_an_owned_httproute_the_crd_accepts(
    gateway_api: KubeCluster, namespace: str, run_operator: Any
) -> None:
    run_operator("httproute")
    name, uid = _server(gateway_api, namespace)

    routes = wait_for(
        lambda: _routes(gateway_api, namespace, name) or None,
        timeout=60,
        what="the ModelServe's route",
    )
    assert set(routes) == {"HTTPRoute"}
    route = routes["HTTPRoute"]
    (owner,) = route["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("ModelServe", name, uid)
    assert owner["controller"] is True
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": f"/{uid}/"}}]
    (backend,) = rule["backendRefs"]
    assert backend["kind"] == "Service"
    assert (backend["name"], backend["namespace"], backend["port"]) == (
        "modelserve-gateway",
        "modelserve",
        8200,
    )
    (parent,) = route["spec"]["parentRefs"]
    assert (parent["name"], parent["namespace"]) == ("public", "ingress")

    # The schema is Gateway API's own: what it refuses never reaches a Gateway.
    bogus = json.loads(json.dumps(route))
    bogus["metadata"] = {"name": "bogus", "namespace": namespace}
    bogus["spec"]["rules"][0]["matches"][0]["path"]["value"] = "no-leading-slash"
    with pytest.raises(RuntimeError, match=r"Invalid value|should match"):
        gateway_api.kubectl("create", stdin=json.dumps(bogus))

    # Deleted by hand, it is put back as built.
    gateway_api.kubectl("delete", "-n", namespace, "httproute", name)
    wait_for(
        lambda: _routes(gateway_api, namespace, name).get("HTTPRoute"),
        timeout=60,
        what="the deleted HTTPRoute to be put back",
    )

    # Its ModelServe deleted, the garbage collector takes it (owner reference).
    gateway_api.kubectl("delete", "-n", namespace, "ms", name)
    wait_for(
        lambda: not _routes(gateway_api, namespace, name),
        timeout=60,
        what="the HTTPRoute to be garbage-collected",
    )


@pytest.mark.kube
@pytest.mark.minio
def test_switching_the_route_kind_leaves_no_stale_route(
    gateway_api: KubeCluster, namespace: str, run_operator: Any
) -> None:
    run_operator("ingressroute")
    name, _ = _server(gateway_api, namespace)
    wait_for(
        lambda: set(_routes(gateway_api, namespace, name)) == {"IngressRoute"},
        timeout=60,
        what="the IngressRoute",
    )

    run_operator("httproute")
    wait_for(
        lambda: set(_routes(gateway_api, namespace, name)) == {"HTTPRoute"},
        timeout=60,
        what="the HTTPRoute, and the IngressRoute to be pruned",
    )

    run_operator("ingressroute")
    wait_for(
        lambda: set(_routes(gateway_api, namespace, name)) == {"IngressRoute"},
        timeout=60,
        what="the IngressRoute back, and the HTTPRoute to be pruned",
    )
