"""operator.route: the chart switches the per-server routes to Gateway API HTTPRoutes,
gives the operator the Gateway to attach them to, grants the cross-namespace backend
(a ReferenceGrant the real API server accepts), and makes its own catch-all route to the
gateway an HTTPRoute too (which that API server accepts as well)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.gateway_api import install_gateway_api_crds
from modelserve.testbed.helm import CHART, Helm, find
from modelserve.testbed.kube import KubeCluster

RELEASE = "modelserve"
NAMESPACE = "modelserve"
HTTPROUTE = {
    "operator": {
        "route": {
            "kind": "httproute",
            "gateway": {"name": "public", "namespace": "ingress", "sectionName": "http"},
        }
    }
}


def operator_settings(
    objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> OperatorSettings:
    """The operator's settings as its rendered ConfigMap gives them."""
    config = find(objects, "ConfigMap", f"{RELEASE}-operator")["data"]
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    return OperatorSettings()


def _grants(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "ReferenceGrant"]


def test_the_operator_is_told_the_route_kind_and_gateway(
    offline_helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, HTTPROUTE)
    settings = operator_settings(objects, monkeypatch)
    assert settings.route_kind == "httproute"
    assert (
        settings.route_gateway_name,
        settings.route_gateway_namespace,
        settings.route_gateway_section_name,
    ) == ("public", "ingress", "http")
    # The backend is the gateway's Kubernetes Service, never a Traefik service.
    assert (settings.route_service, settings.route_service_namespace) == (
        f"{RELEASE}-gateway",
        NAMESPACE,
    )


def test_by_default_routes_are_ingressroutes_and_nothing_is_granted(offline_helm: Helm) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE)
    config = find(objects, "ConfigMap", f"{RELEASE}-operator")["data"]
    assert config["OPERATOR_ROUTE_KIND"] == "ingressroute"
    assert _grants(objects) == []


def test_httproutes_of_the_server_namespaces_may_reach_the_gateway_service(
    offline_helm: Helm,
) -> None:
    (grant,) = _grants(offline_helm.template(RELEASE, NAMESPACE, HTTPROUTE))
    assert grant["metadata"]["namespace"] == NAMESPACE
    assert grant["spec"]["from"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": namespace}
        for namespace in ("default", "inference")
    ]
    assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": f"{RELEASE}-gateway"}]

    without = json.loads(json.dumps(HTTPROUTE))
    without["operator"]["route"]["referenceGrant"] = False
    assert _grants(offline_helm.template(RELEASE, NAMESPACE, without)) == []


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"kind": "httproute"}, "/operator/route"),
        ({"kind": "httproute", "gateway": {"name": ""}}, "/operator/route/gateway/name"),
        ({"kind": "ingress"}, "/operator/route/kind"),
    ],
)
def test_the_schema_refuses_an_httproute_without_a_gateway(
    offline_helm: Helm, route: dict[str, Any], message: str
) -> None:
    values = offline_helm.values_file({"operator": {"route": route}}, "bad-route")
    with pytest.raises(RuntimeError, match=message):
        offline_helm("template", RELEASE, str(CHART), "-f", str(values))


@pytest.mark.kube
def test_the_api_server_accepts_the_reference_grant(
    offline_helm: Helm, crds: KubeCluster, namespace: str
) -> None:
    install_gateway_api_crds(crds)
    values = {**HTTPROUTE, "serverNamespaces": ["default"]}
    (grant,) = _grants(offline_helm.template(RELEASE, namespace, values))
    out = crds.kubectl("apply", "--dry-run=server", stdin=json.dumps(grant))
    assert "referencegrant.gateway.networking.k8s.io" in out


# --- The chart's own catch-all route to the gateway -------------------------------------


def _routes(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_with_httproutes_the_catch_all_route_is_an_httproute_too(offline_helm: Helm) -> None:
    """No Traefik on such a cluster: `/` reaches the gateway through the same Gateway as
    the per-server routes, and no IngressRoute is rendered."""
    values = {**HTTPROUTE, "ingressRoute": {"host": "llm.example.com"}}
    objects = offline_helm.template(RELEASE, NAMESPACE, values)
    assert _routes(objects, "IngressRoute") == []
    (route,) = _routes(objects, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert (route["metadata"]["name"], route["metadata"]["namespace"]) == (
        f"{RELEASE}-gateway",
        NAMESPACE,
    )
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
        "hostnames": ["llm.example.com"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [
                    {"group": "", "kind": "Service", "name": f"{RELEASE}-gateway", "port": 8200}
                ],
            }
        ],
    }


def test_the_catch_all_httproute_defaults_to_a_gateway_of_its_namespace(
    offline_helm: Helm,
) -> None:
    values = {"operator": {"route": {"kind": "httproute", "gateway": {"name": "public"}}}}
    (route,) = _routes(offline_helm.template(RELEASE, NAMESPACE, values), "HTTPRoute")
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}
    ]
    assert "hostnames" not in route["spec"]
    off = {**values, "ingressRoute": {"enabled": False}}
    assert _routes(offline_helm.template(RELEASE, NAMESPACE, off), "HTTPRoute") == []


def test_by_default_the_catch_all_route_is_traefiks(offline_helm: Helm) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE)
    assert _routes(objects, "HTTPRoute") == []
    assert len(_routes(objects, "IngressRoute")) == 1


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"tls": {"enabled": True}}, "/ingressRoute/tls/enabled"),
        ({"middlewares": [{"name": "auth"}]}, "/ingressRoute/middlewares"),
    ],
)
def test_the_schema_refuses_traefiks_options_with_an_httproute(
    offline_helm: Helm, route: dict[str, Any], message: str
) -> None:
    """TLS and middlewares would be silently dropped from an HTTPRoute: refused instead.
    With Traefik's IngressRoute they stay allowed."""
    values = offline_helm.values_file({**HTTPROUTE, "ingressRoute": route}, "traefik-only")
    with pytest.raises(RuntimeError, match=message):
        offline_helm("template", RELEASE, str(CHART), "-f", str(values))
    objects = offline_helm.template(RELEASE, NAMESPACE, {"ingressRoute": route})
    assert len(_routes(objects, "IngressRoute")) == 1


@pytest.mark.kube
def test_the_api_server_accepts_the_catch_all_httproute(
    offline_helm: Helm, crds: KubeCluster, namespace: str
) -> None:
    install_gateway_api_crds(crds)
    values = {**HTTPROUTE, "ingressRoute": {"host": "llm.example.com"}}
    (route,) = _routes(offline_helm.template(RELEASE, namespace, values), "HTTPRoute")
    out = crds.kubectl("apply", "--dry-run=server", stdin=json.dumps(route))
    assert "httproute.gateway.networking.k8s.io" in out


def test_the_per_server_routes_get_the_platform_route_s_host_middlewares_and_tls(
    offline_helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "ingressRoute": {
            "host": "llm.example.com",
            "middlewares": [{"name": "ip-allowlist", "namespace": "edge"}, {"name": "https"}],
            "tls": {"enabled": True, "secretName": "llm-tls"},
        }
    }
    objects = offline_helm.template(RELEASE, NAMESPACE, values)
    settings = operator_settings(objects, monkeypatch)
    assert settings.route_host == "llm.example.com"
    # A middleware without a namespace is the release's, as on the chart's own route.
    assert settings.route_middlewares == f"edge/ip-allowlist,{NAMESPACE}/https"
    assert (settings.route_tls, settings.route_tls_cert_resolver) == (True, "")
    defaults = find(offline_helm.template(RELEASE, NAMESPACE), "ConfigMap", f"{RELEASE}-operator")
    assert "OPERATOR_ROUTE_HOST" not in defaults["data"]  # empty: any host
    assert "OPERATOR_ROUTE_MIDDLEWARES" not in defaults["data"]
    assert defaults["data"]["OPERATOR_ROUTE_TLS"] == "false"
