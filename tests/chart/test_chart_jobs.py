"""The jobs service as the chart deploys it (issue 17): replicas that are workers, each
named by its pod; wired to the gateway both ways (the gateway passes the jobs routes to
its Service, its items go to the gateway's Service); its database and platform store;
who may connect to it; and the service token it signs for `POST /auth/delegate` being one
the gateway, as the chart configures it, accepts from a service.

Each test reads what `helm template` renders, as the API server would get it; the chart's
install test (test_chart_install.py) brings its pods up on the test bed's cluster."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.common.tokens import TokenSigner, TokenVerifier
from modelserve.gateway.settings import GatewaySettings
from modelserve.jobs.app import build_kinds
from modelserve.jobs.settings import JobsSettings
from modelserve.testbed.helm import Helm, find

RELEASE = "modelserve"
NAMESPACE = "modelserve"
JOBS = f"{RELEASE}-jobs"
SELECTOR = {
    "app.kubernetes.io/name": "modelserve",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "jobs",
}

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def rendered(offline_helm: Helm) -> Objects:
    return offline_helm.template(RELEASE, NAMESPACE)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No setting of this machine's environment leaks into the settings under test."""
    for name in list(os.environ):
        if name.startswith(("JOBS_", "GATEWAY_", "JWT_", "MINIO_", "MODELSERVE_")) or (
            name == "DATABASE_URL"
        ):
            monkeypatch.delenv(name)
    yield monkeypatch


def _container(objects: Objects, component: str) -> dict[str, Any]:
    deployment = find(objects, "Deployment", f"{RELEASE}-{component}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _environment(objects: Objects, component: str) -> dict[str, str]:
    """The environment a component's container starts with, Secrets resolved from the
    render; a field reference (the pod's name) as `<component>-pod-0`."""
    secrets = {
        obj["metadata"]["name"]: obj.get("data", {}) for obj in objects if obj["kind"] == "Secret"
    }
    container = _container(objects, component)
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
        else:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, var
            env[var["name"]] = f"{component}-pod-0"
    return env


def _service_url(objects: Objects, component: str) -> str:
    """The in-cluster URL of a component's Service, read from the rendered Service."""
    service = find(objects, "Service", f"{RELEASE}-{component}")
    (port,) = service["spec"]["ports"]
    meta = service["metadata"]
    return f"http://{meta['name']}.{meta['namespace']}.svc:{port['port']}"


def test_replicas_are_workers_each_named_by_its_pod(offline_helm: Helm, rendered: Objects) -> None:
    deployment = find(rendered, "Deployment", JOBS)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == SELECTOR
    assert deployment["spec"]["template"]["metadata"]["labels"] == SELECTOR
    container = _container(rendered, "jobs")
    assert container["command"] == ["modelserve-jobs"]
    (worker_id,) = [var for var in container["env"] if var["name"] == "JOBS_WORKER_ID"]
    assert worker_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}

    scaled = offline_helm.template(RELEASE, NAMESPACE, {"jobs": {"replicas": 5}})
    assert find(scaled, "Deployment", JOBS)["spec"]["replicas"] == 5
    # Only the jobs service's pods change.
    for component in ("gateway", "contract", "download"):
        name = f"{RELEASE}-{component}"
        assert find(scaled, "Deployment", name) == find(rendered, "Deployment", name)


def test_its_service_leads_to_its_pods_on_8203(rendered: Objects) -> None:
    service = find(rendered, "Service", JOBS)
    assert service["spec"]["selector"] == SELECTOR
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8203, "targetPort": "http", "protocol": "TCP"}
    ]
    container = _container(rendered, "jobs")
    assert container["ports"] == [{"name": "http", "containerPort": 8203, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_the_gateway_and_the_jobs_service_find_each_other_through_their_services(
    rendered: Objects, clean_environment: pytest.MonkeyPatch
) -> None:
    gateway_env = _environment(rendered, "gateway")
    jobs_env = _environment(rendered, "jobs")
    assert gateway_env["GATEWAY_JOBS_URL"] == _service_url(rendered, "jobs")
    assert jobs_env["JOBS_GATEWAY_URL"] == _service_url(rendered, "gateway")
    assert jobs_env["JWT_GATEWAY_URL"] == _service_url(rendered, "gateway")
    for name, value in jobs_env.items():
        clean_environment.setenv(name, value)
    settings = JobsSettings()
    assert settings.host == "0.0.0.0" and settings.port == 8203
    assert settings.gateway_url == _service_url(rendered, "gateway")
    assert settings.worker_id == "jobs-pod-0"
    assert settings.database_url.get_secret_value().startswith("postgresql://")
    assert (
        settings.database_url.get_secret_value()
        == _environment(rendered, "gateway")["GATEWAY_DATABASE_URL"]
    )
    store = settings.store()
    assert store is not None
    assert (store.endpoint, store.secure) == (f"{RELEASE}-minio.{NAMESPACE}.svc:9000", False)
    minio = find(rendered, "Secret", f"{RELEASE}-minio")["data"]
    assert store.access_key == base64.b64decode(minio["access-key"]).decode()
    assert settings.store_bucket == "inference-models"


def test_values_reach_the_service_s_settings(
    offline_helm: Helm, clean_environment: pytest.MonkeyPatch
) -> None:
    values = {
        "jobs": {
            "concurrency": 3,
            "maxPerModel": 2,
            "leaseSeconds": 45,
            "renewSeconds": 7.5,
            "maxAttempts": 4,
            "retrySeconds": 2,
            "retryMaxSeconds": 60,
            "gatewayTimeoutSeconds": 120,
            "filesMaxBytes": 1048576,
            "batchMaxRequests": 200,
            "databasePoolSize": 6,
            "logLevel": "debug",
            "config": {"JOBS_POLL_SECONDS": 0.5},
        },
        "platformBucket": "platform-data",
    }
    objects = offline_helm.template(RELEASE, NAMESPACE, values)
    for name, value in _environment(objects, "jobs").items():
        clean_environment.setenv(name, value)
    settings = JobsSettings()
    assert (settings.concurrency, settings.max_per_model) == (3, 2)
    assert (settings.lease_seconds, settings.renew_seconds) == (45, 7.5)
    assert (settings.max_attempts, settings.retry_seconds, settings.retry_max_seconds) == (4, 2, 60)
    assert settings.gateway_timeout_seconds == 120
    assert (settings.files_max_bytes, settings.batch_max_requests) == (1048576, 200)
    assert settings.database_pool_size == 6 and settings.log_level == "debug"
    assert settings.poll_seconds == 0.5
    assert settings.store_bucket == "platform-data"


def test_switched_off_it_leaves_nothing_and_the_gateway_answers_without_it(
    offline_helm: Helm,
) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, {"jobs": {"enabled": False}})
    assert not [
        obj
        for obj in objects
        if obj["metadata"]["labels"].get("app.kubernetes.io/component") == "jobs"
    ]
    assert "GATEWAY_JOBS_URL" not in find(objects, "ConfigMap", f"{RELEASE}-gateway")["data"]
    # Without a gateway in the release its items have nowhere to go: it runs none.
    alone = offline_helm.template(RELEASE, NAMESPACE, {"gateway": {"enabled": False}})
    assert "JOBS_GATEWAY_URL" not in find(alone, "ConfigMap", JOBS)["data"]


def _component(component: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {**SELECTOR, "app.kubernetes.io/component": component}}}


def test_only_the_gateway_may_call_it_and_it_reaches_its_stores(rendered: Objects) -> None:
    policies = {
        obj["metadata"]["name"]: obj["spec"]
        for obj in rendered
        if obj["kind"] == "NetworkPolicy" and obj["metadata"]["namespace"] == NAMESPACE
    }
    jobs = policies[JOBS]
    assert jobs["podSelector"] == {"matchLabels": SELECTOR}
    assert jobs["policyTypes"] == ["Ingress"]
    assert jobs["ingress"] == [
        {"ports": [{"port": 8203, "protocol": "TCP"}], "from": [_component("gateway")]}
    ]
    (database,) = policies[f"{RELEASE}-postgresql"]["ingress"]
    assert _component("jobs") in database["from"]
    (store,) = policies[f"{RELEASE}-minio"]["ingress"]
    assert _component("jobs") in store["from"]
    # Its calls to the gateway: the gateway's port is open to the cluster.
    (gateway,) = policies[f"{RELEASE}-gateway"]["ingress"]
    assert "from" not in gateway and gateway["ports"] == [{"port": 8200, "protocol": "TCP"}]


def _delegation_token_is_accepted(
    objects: Objects, clean_environment: pytest.MonkeyPatch, folder: Path
) -> None:
    """The jobs service, with the chart's settings, builds its job types (which sign a
    service token for POST /auth/delegate), and the gateway, with the chart's settings,
    takes that token as a platform service's."""
    for name, value in _environment(objects, "jobs").items():
        clean_environment.setenv(name, value)
    jobs = JobsSettings()

    async def sign_and_verify() -> bool:
        async with httpx.AsyncClient() as http:
            assert build_kinds(jobs, http), "no job types: its items would never run"
        token = TokenSigner.from_settings(jobs.tokens).service_token("jobs")
        for name in list(os.environ):
            if name.startswith(("JOBS_", "JWT_")):
                clean_environment.delenv(name)
        for name, value in _environment(objects, "gateway").items():
            clean_environment.setenv(name, value)
        if "JWT_PRIVATE_KEY_FILE" in os.environ:  # RS256: the key its pods mount
            key = find(objects, "Secret", f"{RELEASE}-jwt-key")["data"]["private-key.pem"]
            (folder / "private-key.pem").write_bytes(base64.b64decode(key))
            clean_environment.setenv("JWT_PRIVATE_KEY_FILE", str(folder / "private-key.pem"))
        gateway = GatewaySettings()
        claims = await TokenVerifier.from_settings(gateway.tokens).verify(token)
        return bool(claims.is_service)

    assert asyncio.run(sign_and_verify())


def test_with_hs256_its_delegation_requests_are_a_service_s(
    offline_helm: Helm, clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, {"auth": {"algorithm": "HS256"}})
    _delegation_token_is_accepted(objects, clean_environment, tmp_path)


def test_with_rs256_its_delegation_requests_are_a_service_s(
    rendered: Objects, clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _delegation_token_is_accepted(rendered, clean_environment, tmp_path)


def test_its_metrics_are_scraped_by_those_let_through(offline_helm: Helm) -> None:
    prometheus = {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    objects = offline_helm.template(
        RELEASE,
        NAMESPACE,
        {
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
            "networkPolicy": {"jobsFrom": [prometheus]},
        },
    )
    monitor = find(objects, "ServiceMonitor", JOBS)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"] == {"matchLabels": SELECTOR}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert "authorization" not in endpoint  # the jobs service's /metrics asks for none
    (policy,) = [
        obj["spec"]
        for obj in objects
        if obj["kind"] == "NetworkPolicy" and obj["metadata"]["name"] == JOBS
    ]
    assert policy["ingress"][0]["from"] == [_component("gateway"), prometheus]
    alone = offline_helm.template(
        RELEASE,
        NAMESPACE,
        {"metrics": {"serviceMonitor": {"enabled": True}}, "jobs": {"enabled": False}},
    )
    monitors = [obj["metadata"]["name"] for obj in alone if obj["kind"] == "ServiceMonitor"]
    assert f"{RELEASE}-gateway" in monitors and JOBS not in monitors
