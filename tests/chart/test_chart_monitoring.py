"""The chart's monitoring: a PodMonitor for the model servers that selects the pods the
operator really builds, on the port it really names; ServiceMonitors for the gateway, jobs,
contract, download and operator on ports their Services have; the operator's metrics
Service; and networkPolicy.metricsFrom opening each /metrics port to Prometheus only."""

from __future__ import annotations

from typing import Any

import pytest

from modelserve.common.modelserve import SERVER_CONTAINER, ModelServe
from modelserve.operator.builders import NAME_LABEL, RUNTIME_LABEL
from modelserve.operator.children import build_children
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.helm import Helm, find

RELEASE = "modelserve"
NAMESPACE = "modelserve"
Objects = list[dict[str, Any]]
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
ENABLED = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "podMonitor": {"enabled": True, "labels": {"release": "prom"}, "interval": "20s"},
    },
    "networkPolicy": {"metricsFrom": [PROMETHEUS]},
    "serverNamespaces": ["team-a"],
}


@pytest.fixture(scope="module")
def defaults(offline_helm: Helm) -> Objects:
    return offline_helm.template(RELEASE, NAMESPACE)


@pytest.fixture(scope="module")
def enabled(offline_helm: Helm) -> Objects:
    return offline_helm.template(RELEASE, NAMESPACE, ENABLED)


def _policies(objects: Objects) -> dict[tuple[str, str], list[dict[str, Any]]]:
    return {
        (obj["metadata"]["namespace"], obj["metadata"]["name"]): obj["spec"]["ingress"]
        for obj in objects
        if obj["kind"] == "NetworkPolicy"
    }


def _server_pod(runtime: str) -> dict[str, Any]:
    """The pod template the operator builds for a ModelServe of `runtime`."""
    spec: dict[str, Any] = {"runtime": runtime, "model": {"uri": "s3://m/m.gguf", "format": "gguf"}}
    if runtime == "vllm":
        spec = {"runtime": runtime, "model": {"uri": "s3://m/m/"}, "resources": {"gpus": 1}}
    meta = {"name": "m", "namespace": "team-a", "uid": "u", "generation": 1}
    ms = ModelServe.from_body({"metadata": meta, "spec": spec})
    (deployment,) = [c for c in build_children(ms, OperatorSettings()) if c["kind"] == "Deployment"]
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def test_nothing_is_monitored_unless_asked_and_no_port_opens(defaults: Objects) -> None:
    kinds = {obj["kind"] for obj in defaults}
    assert not kinds & {"ServiceMonitor", "PodMonitor"}
    policies = _policies(defaults)
    assert policies[(NAMESPACE, f"{RELEASE}-operator")] == []
    (servers,) = policies[(NAMESPACE, f"{RELEASE}-model-servers")]
    assert servers["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "gateway"
    )


def test_the_operator_has_a_metrics_service_on_its_metrics_port(defaults: Objects) -> None:
    service = find(defaults, "Service", f"{RELEASE}-operator")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8211, "targetPort": "metrics", "protocol": "TCP"}
    ]
    deployment = find(defaults, "Deployment", f"{RELEASE}-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 8211, "protocol": "TCP"} in container["ports"]
    assert find(defaults, "ConfigMap", f"{RELEASE}-operator")["data"]["OPERATOR_METRICS_PORT"] == (
        "8211"
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("runtime", ["vllm", "llamacpp"])
def test_the_pod_monitor_selects_the_servers_the_operator_builds(
    enabled: Objects, runtime: str
) -> None:
    monitor = find(enabled, "PodMonitor", f"{RELEASE}-model-servers")
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "prom"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["team-a", NAMESPACE]}
    pod = _server_pod(runtime)
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = spec["podMetricsEndpoints"]
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == SERVER_CONTAINER]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "20s")
    if runtime == "llamacpp":
        assert "--metrics" in container["args"]  # llama-server serves /metrics only so
    # Prometheus's meta label of each pod label the dashboard selects by.
    meta = {
        "__meta_kubernetes_pod_label_"
        + "".join(ch if ch.isalnum() else "_" for ch in label): target
        for label, target in ((NAME_LABEL, "modelserve"), (RUNTIME_LABEL, "runtime"))
    }
    relabelled = {r["sourceLabels"][0]: r["targetLabel"] for r in endpoint["relabelings"]}
    assert relabelled == meta
    assert pod["metadata"]["labels"][RUNTIME_LABEL] == runtime


def test_service_monitors_scrape_ports_their_services_have(enabled: Objects) -> None:
    expected = {
        "gateway": ("http", True),
        "jobs": ("http", False),
        "contract": ("http", True),
        "download": ("http", True),
        "operator": ("metrics", False),
    }
    monitors = {obj["metadata"]["name"]: obj for obj in enabled if obj["kind"] == "ServiceMonitor"}
    assert set(monitors) == {f"{RELEASE}-{component}" for component in expected}
    for component, (port, token) in expected.items():
        monitor = monitors[f"{RELEASE}-{component}"]
        assert monitor["metadata"]["labels"]["release"] == "prom"
        service = find(enabled, "Service", f"{RELEASE}-{component}")
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items(), component
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == port, component
        assert port in {p["name"] for p in service["spec"]["ports"]}, component
        assert endpoint["path"] == "/metrics"
        if token:
            credentials = endpoint["authorization"]["credentials"]
            assert credentials == {"name": f"{RELEASE}-auth", "key": "metrics-token"}
        else:
            assert "authorization" not in endpoint, component


def test_metrics_from_opens_each_metrics_port_to_prometheus(enabled: Objects) -> None:
    policies = _policies(enabled)

    def opened(namespace: str, component: str) -> set[int]:
        return {
            port["port"]
            for rule in policies[(namespace, f"{RELEASE}-{component}")]
            if PROMETHEUS in rule.get("from", [])
            for port in rule["ports"]
        }

    assert opened(NAMESPACE, "operator") == {8211}
    assert opened(NAMESPACE, "contract") == {8201}  # not the webhook's 8443
    assert opened(NAMESPACE, "download") == {8202}
    assert opened(NAMESPACE, "jobs") == {8203}
    assert opened(NAMESPACE, "gateway") == set()  # open to the cluster already
    for namespace in ("team-a", NAMESPACE):
        assert opened(namespace, "model-servers") == {8000, 8080}
    # The rules that were there stay as they were.
    (gateway_rule, _, _) = policies[(NAMESPACE, f"{RELEASE}-contract")]
    assert len(gateway_rule["from"]) == 2 and PROMETHEUS not in gateway_rule["from"]


def test_a_bad_interval_is_refused(offline_helm: Helm) -> None:
    with pytest.raises(RuntimeError, match="interval"):
        offline_helm.template(RELEASE, NAMESPACE, {"metrics": {"podMonitor": {"interval": "fast"}}})


@pytest.mark.parametrize("values", [{}, ENABLED], ids=["defaults", "monitors"])
@pytest.mark.parametrize("component", ["contract", "download"])
def test_contract_and_download_ask_for_the_token_their_monitors_send(
    offline_helm: Helm, enabled: Objects, values: dict[str, Any], component: str
) -> None:
    """Their /metrics is protected in every install, monitored or not: the token is the
    auth Secret's metrics-token, the one their ServiceMonitor sends."""
    objects = enabled if values else offline_helm.template(RELEASE, NAMESPACE)
    deployment = find(objects, "Deployment", f"{RELEASE}-{component}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry for entry in container["env"]}
    reference = env[f"{component.upper()}_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
    monitor = find(enabled, "ServiceMonitor", f"{RELEASE}-{component}")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert reference == endpoint["authorization"]["credentials"]
    assert reference == {"name": f"{RELEASE}-auth", "key": "metrics-token"}
    secret = find(objects, "Secret", f"{RELEASE}-auth")
    assert secret["data"]["metrics-token"]
    config = find(objects, "ConfigMap", f"{RELEASE}-{component}")["data"]
    assert f"{component.upper()}_METRICS_TOKEN" not in config  # a secret, never in a ConfigMap


def test_an_existing_auth_secret_gives_them_its_token(offline_helm: Helm) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, {"auth": {"existingSecret": "mine"}})
    for component in ("contract", "download"):
        deployment = find(objects, "Deployment", f"{RELEASE}-{component}")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        (entry,) = [
            e for e in container["env"] if e["name"] == f"{component.upper()}_METRICS_TOKEN"
        ]
        assert entry["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "metrics-token"}
