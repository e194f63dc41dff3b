"""The chart as rendered: lint, schema, one source for CRDs and RBAC, settings the services
accept, checksums, the dashboard's metrics; and the real API server accepting all of it."""

from __future__ import annotations

import base64
import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from modelserve.common.tokens import DEVELOPMENT_SECRET, TokenSettings
from modelserve.contract.admission import (
    build_mutating_webhook_configuration,
    build_webhook_configuration,
)
from modelserve.contract.settings import ContractSettings
from modelserve.download.settings import DownloadSettings
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.settings import GatewaySettings
from modelserve.jobs.settings import JobsSettings
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.cache import repo_root
from modelserve.testbed.helm import CHART, Helm, find
from modelserve.testbed.kube import KubeCluster

RELEASE = "modelserve"
NAMESPACE = "modelserve"
COMPONENTS = ("operator", "gateway", "contract", "download", "jobs")
# The FastAPI services: /ready, a preStop sleep, JSON logs.
SERVICES = ("gateway", "contract", "download", "jobs")
# Where ModelServes live by default: the contract's default namespaces and the release's.
SERVER_NAMESPACES = ("default", "inference", NAMESPACE)
SETTINGS: dict[str, type[BaseSettings]] = {
    "operator": OperatorSettings,
    "gateway": GatewaySettings,
    "contract": ContractSettings,
    "download": DownloadSettings,
    "jobs": JobsSettings,
}
RBAC_FILES = {
    "operator": repo_root() / "operator" / "deploy" / "rbac.yaml",
    "gateway": repo_root() / "services" / "gateway" / "deploy" / "rbac.yaml",
    "contract": repo_root() / "services" / "contract" / "deploy" / "rbac.yaml",
}
EXTERNAL: dict[str, Any] = {
    "postgresql": {"enabled": False},
    "externalDatabase": {"existingSecret": "my-database", "existingSecretKey": "dsn"},
    "minio": {"enabled": False},
    "externalS3": {
        "endpoint": "s3.example.com:443",
        "secure": True,
        "region": "eu-west-1",
        "existingSecret": "my-s3",
    },
    "download": {
        "upstream": {"endpoint": "quant.example.com:9000", "accessKey": "a", "secretKey": "b"}
    },
}


@pytest.fixture(scope="module")
def rendered(offline_helm: Helm) -> list[dict[str, Any]]:
    return offline_helm.template(RELEASE, NAMESPACE)


def _deployment(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return find(objects, "Deployment", f"{RELEASE}-{component}")


def _lint_problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"\[(WARNING|ERROR)\]", line)]


def test_lint_is_clean_in_strict_mode(offline_helm: Helm) -> None:
    assert _lint_problems(offline_helm("lint", "--strict", str(CHART))) == []
    external = offline_helm.values_file(EXTERNAL, "external")
    assert _lint_problems(offline_helm("lint", "--strict", str(CHART), "-f", str(external))) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "gateway.replica=3"), "additional properties 'replica' not allowed"),
        (("--set", "auth.jwtSecret=too-short"), "/auth/jwtSecret"),
        (("--set", "contract.webhook.failurePolicy=Maybe"), "failurePolicy"),
        (("--set", "image.pullPolicy=Sometimes"), "pullPolicy"),
        (("--set", "postgresql.enabled=false"), "externalDatabase"),
        (("--set", "minio.enabled=false"), "externalS3"),
    ],
)
def test_bad_values_are_refused_with_a_reason(
    offline_helm: Helm, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(RuntimeError, match=re.escape(message)):
        offline_helm("template", RELEASE, str(CHART), *args)


def test_crds_are_the_repository_crds_not_a_copy(offline_helm: Helm, tmp_path: Path) -> None:
    link = CHART / "crds"
    assert link.is_symlink() and link.resolve() == (repo_root() / "crds").resolve()
    sources = sorted((repo_root() / "crds").glob("*.yaml"))
    assert sources
    shown = offline_helm("show", "crds", str(CHART))
    assert [doc for doc in yaml.safe_load_all(shown) if doc] == [
        yaml.safe_load(path.read_text()) for path in sources
    ]
    # A packaged chart carries the files themselves, byte for byte.
    offline_helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("modelserve-*.tgz")
    with tarfile.open(archive) as tar:
        for path in sources:
            member = tar.extractfile(f"modelserve/crds/{path.name}")
            assert member is not None and member.read() == path.read_bytes()
        assert "modelserve/crds/README.md" not in tar.getnames()


def _rules(path: Path, kind: str = "ClusterRole") -> Any:
    """The rules of the manifest's ClusterRole, or those of its Roles (the same in each
    namespace where ModelServes live; none: [])."""
    own = f"modelserve-{path.parent.parent.name}"  # not e.g. the operator's Lease Role
    roles = [
        doc
        for doc in yaml.safe_load_all(path.read_text())
        if doc["kind"] == kind and doc["metadata"]["name"] == own
    ]
    if kind == "ClusterRole":
        (role,) = roles
        return role["rules"]
    assert all(role["rules"] == roles[0]["rules"] for role in roles)
    assert {role["metadata"]["namespace"] for role in roles} <= set(SERVER_NAMESPACES)
    return roles[0]["rules"] if roles else []


@pytest.mark.parametrize("component", sorted(RBAC_FILES))
def test_rbac_rules_are_those_of_the_deploy_files(
    rendered: list[dict[str, Any]], component: str
) -> None:
    name = f"{RELEASE}-{component}"
    subjects = [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    assert find(rendered, "ClusterRole", name)["rules"] == _rules(RBAC_FILES[component])
    binding = find(rendered, "ClusterRoleBinding", name)
    assert binding["roleRef"]["name"] == name
    assert binding["subjects"] == subjects
    namespaced = _rules(RBAC_FILES[component], "Role")
    roles = {
        obj["metadata"]["namespace"]: obj
        for obj in rendered
        if obj["kind"] == "Role" and obj["metadata"]["name"] == name
    }
    assert sorted(roles) == (sorted(SERVER_NAMESPACES) if namespaced else [])
    for namespace, role in roles.items():
        assert role["rules"] == namespaced
        binding = find(
            [obj for obj in rendered if obj["metadata"].get("namespace") == namespace],
            "RoleBinding",
            name,
        )
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": name,
        }
        assert binding["subjects"] == subjects
    assert _deployment(rendered, component)["spec"]["template"]["spec"]["serviceAccountName"] == (
        name
    )


@pytest.mark.parametrize(
    ("component", "verbs"),
    [
        ("gateway", ["get", "list", "create", "update", "patch", "delete"]),
        ("operator", ["get", "list", "watch"]),
    ],
)
def test_load_report_leases_are_reachable_in_the_release_namespace_only(
    rendered: list[dict[str, Any]], component: str, verbs: list[str]
) -> None:
    """Dynamic loading: the gateway writes its replicas' Leases, the operator reads them,
    both in the release's namespace only, as their deploy files grant it."""
    leases = [
        (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        for obj in rendered
        if obj["kind"] in ("Role", "ClusterRole")
        and any("leases" in rule.get("resources", []) for rule in obj["rules"])
        and obj["metadata"]["name"].startswith(f"{RELEASE}-{component}")
    ]
    suffix = "load" if component == "gateway" else "gateway-load"
    name = f"{RELEASE}-{component}-{suffix}"
    assert leases == [("Role", NAMESPACE, name)]
    role = find(rendered, "Role", name)
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": verbs}
    ]
    deployed = [
        doc
        for doc in yaml.safe_load_all(RBAC_FILES[component].read_text())
        if doc["kind"] == "Role" and doc["metadata"]["name"] == f"modelserve-{component}-{suffix}"
    ]
    assert [doc["rules"] for doc in deployed] == [role["rules"]]


def test_the_download_service_gets_no_kubernetes_credentials(
    rendered: list[dict[str, Any]],
) -> None:
    assert not [obj for obj in rendered if obj["metadata"]["name"].endswith("download-role")]
    account = find(rendered, "ServiceAccount", f"{RELEASE}-download")
    assert account["automountServiceAccountToken"] is False
    assert "ClusterRole" not in {
        obj["kind"] for obj in rendered if obj["metadata"]["name"] == f"{RELEASE}-download"
    }


def test_every_component_runs_the_one_image_with_its_command(
    rendered: list[dict[str, Any]],
) -> None:
    for component in COMPONENTS:
        (container,) = _deployment(rendered, component)["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "modelserve/modelserve:0.2.0"
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert container["command"] == [f"modelserve-{component}"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (repo_root() / "pyproject.toml").read_text()
    assert f'version = "{chart["appVersion"]}"' in pyproject


def _secrets(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        obj["metadata"]["name"]: {
            key: base64.b64decode(value).decode() for key, value in obj.get("data", {}).items()
        }
        for obj in objects
        if obj["kind"] == "Secret"
    }


def _environment(
    objects: list[dict[str, Any]], component: str, external: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The environment a component's container starts with (Secrets of the render, or
    `external` ones given by name)."""
    secrets = {**_secrets(objects), **external}
    (container,) = _deployment(objects, component)["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[var["name"]] = f"{component}-pod-0"
    return env


def _names(settings: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field, info in settings.model_fields.items():
        if isinstance(info.validation_alias, AliasChoices):
            names |= {str(choice) for choice in info.validation_alias.choices}
        elif field != "tokens":
            names.add(f"{prefix}{field}".upper())
    return names


TOKEN_NAMES = _names(TokenSettings) | {"MODELSERVE_DEVELOPMENT"}
# Read by uvicorn itself: the proxies whose X-Forwarded-For it believes.
SERVER_NAMES = {"FORWARDED_ALLOW_IPS"}


SETTING_NAME = re.compile(
    r"(GATEWAY|CONTRACT|DOWNLOAD|JOBS|OPERATOR|JWT|MINIO|MODELSERVE)_|DATABASE"
)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No setting of this machine's environment leaks into the settings under test."""
    for name in list(os.environ):
        if SETTING_NAME.match(name):
            monkeypatch.delenv(name)
    yield monkeypatch


@pytest.mark.parametrize("values", [{}, EXTERNAL], ids=["in-chart stores", "external stores"])
@pytest.mark.parametrize("component", COMPONENTS)
def test_each_service_accepts_the_settings_it_is_given(
    offline_helm: Helm,
    clean_environment: pytest.MonkeyPatch,
    component: str,
    values: dict[str, Any],
) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, values)
    external = {
        "my-database": {"dsn": "postgresql://u:p@db.example.com:5432/modelserve"},
        "my-s3": {"access-key": "ak", "secret-key": "sk"},
    }
    env = _environment(objects, component, external)
    settings_class = SETTINGS[component]
    unknown = set(env) - _names(settings_class) - TOKEN_NAMES - SERVER_NAMES
    assert not unknown, f"{component} reads no {sorted(unknown)}"
    for name, value in env.items():
        clean_environment.setenv(name, value)
    settings: Any = settings_class()

    assert "MODELSERVE_DEVELOPMENT" not in env and "JWT_DEVELOPMENT" not in env
    if component != "operator":
        assert settings.host == "0.0.0.0"
        # RS256: the gateway signs with its key file, the others verify with its key set.
        tokens = settings.tokens
        assert tokens.algorithm == "RS256" and "JWT_SECRET" not in env
        if component == "gateway":
            assert str(tokens.private_key_file) == "/etc/modelserve/jwt/private-key.pem"
            assert tokens.jwks_url is None
        else:
            assert tokens.private_key_file is None
            assert tokens.jwks_url == (
                f"http://{RELEASE}-gateway.{NAMESPACE}.svc:8200/.well-known/jwks.json"
            )
        database = settings.database_url.get_secret_value()
        if values:
            assert database == external["my-database"]["dsn"]
        else:
            assert f"@{RELEASE}-postgresql.{NAMESPACE}.svc:5432/modelserve" in database
    contract_url = f"http://{RELEASE}-contract.{NAMESPACE}.svc:8201"
    store = (
        "s3.example.com:443" if values else f"{RELEASE}-minio.{NAMESPACE}.svc:9000",
        "ak" if values else _secrets(objects)[f"{RELEASE}-minio"]["access-key"],
    )
    if component == "operator":
        assert settings.health_host == "0.0.0.0" and settings.health_port == 8210
        assert settings.fetch_image == "modelserve/modelserve:0.2.0"
        assert settings.route_service == f"{RELEASE}-gateway"
        assert settings.route_service_namespace == NAMESPACE
        assert settings.route_service_port == 8200
        assert settings.model_store_endpoint == store[0]
        assert settings.model_store_access_key.get_secret_value() == store[1]
        assert settings.model_store_secure is bool(values)
        assert settings.namespace_list() == list(SERVER_NAMESPACES)
        assert settings.model_store_region == ("eu-west-1" if values else "us-east-1")
    elif component == "gateway":
        assert settings.port == 8200
        assert settings.contract_url == contract_url
        assert settings.download_url == f"http://{RELEASE}-download.{NAMESPACE}.svc:8202"
        assert settings.jobs_url == f"http://{RELEASE}-jobs.{NAMESPACE}.svc:8203"
        assert settings.admin_password is not None and settings.metrics_token is not None
        assert len(settings.admin_password.get_secret_value()) >= 8
        assert settings.watch_namespaces == ",".join(SERVER_NAMESPACES)
        assert settings.platform_namespaces == NAMESPACE
        assert "FORWARDED_ALLOW_IPS" not in env  # trusts no proxy unless told
        # The web UI from the build the image holds (Dockerfile).
        assert str(settings.ui_dir) == "/usr/share/modelserve/ui"
    elif component == "contract":
        assert (settings.port, settings.webhook_port) == (8201, 8443)
        assert settings.delegating_users == (f"system:serviceaccount:{NAMESPACE}:{RELEASE}-gateway")
        assert str(settings.tls_cert_file) == "/etc/modelserve/webhook/tls.crt"
        assert str(settings.webhook_client_ca_file) == "/etc/modelserve/webhook-client/ca.crt"
        assert settings.webhook_client_names == "kube-apiserver-webhook-client"
        assert settings.platform_namespaces == NAMESPACE
        assert settings.model_prefix == "s3://inference-models/models/"
    elif component == "jobs":
        assert settings.port == 8203
        assert settings.worker_id == "jobs-pod-0"
        assert settings.gateway_url == f"http://{RELEASE}-gateway.{NAMESPACE}.svc:8200"
        assert settings.tokens.gateway_url == settings.gateway_url
        assert (settings.store_endpoint, settings.store_access_key) == store
        assert settings.store_secure is bool(values)
        assert settings.store_bucket == "inference-models"
        assert settings.store_region == ("eu-west-1" if values else None)
    else:
        assert settings.port == 8202
        assert settings.contract_url == contract_url
        assert settings.worker_id == "download-pod-0"
        assert (settings.platform_endpoint, settings.platform_access_key) == store
        if values:
            assert settings.upstream_endpoint == "quant.example.com:9000"
            assert settings.upstream_access_key == "a"
            assert settings.platform_region == "eu-west-1"
        else:
            assert (settings.upstream_endpoint, settings.upstream_access_key) == store


def test_with_hs256_the_services_share_one_signing_secret(
    offline_helm: Helm, clean_environment: pytest.MonkeyPatch
) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, {"auth": {"algorithm": "HS256"}})
    auth = _secrets(objects)[f"{RELEASE}-auth"]
    assert len(auth["jwt-secret"]) >= 32
    for component in ("gateway", "contract", "download", "jobs"):
        env = _environment(objects, component, {})
        assert env["JWT_SECRET"] == auth["jwt-secret"]
        assert env["JWT_ALGORITHM"] == "HS256"
        assert "JWT_PRIVATE_KEY_FILE" not in env and "JWT_JWKS_URL" not in env
        for name, value in env.items():
            clean_environment.setenv(name, value)
        secret = SETTINGS[component]().tokens.secret.get_secret_value()  # type: ignore[attr-defined]
        assert secret == auth["jwt-secret"] and secret != DEVELOPMENT_SECRET


def test_the_stores_buckets_exist_before_minio_starts(rendered: list[dict[str, Any]]) -> None:
    minio = find(rendered, "StatefulSet", f"{RELEASE}-minio")["spec"]["template"]["spec"]
    (init,) = minio["initContainers"]
    assert init["command"] == ["mkdir", "-p", "/data/inference-models", "/data/llm-models"]


def test_external_stores_replace_the_in_chart_ones(offline_helm: Helm) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, EXTERNAL)
    assert not [obj for obj in objects if obj["kind"] == "StatefulSet"]
    assert set(_secrets(objects)) == {
        f"{RELEASE}-auth",
        f"{RELEASE}-jwt-key",
        f"{RELEASE}-upstream",
        f"{RELEASE}-contract-webhook",
        f"{RELEASE}-webhook-client",
    }
    policies = {
        obj["metadata"]["name"]
        for obj in objects
        if obj["kind"] == "NetworkPolicy" and obj["metadata"]["namespace"] == NAMESPACE
    }
    assert policies == {f"{RELEASE}-{component}" for component in COMPONENTS} | {
        f"{RELEASE}-model-servers",
    }


def test_no_fixed_passwords_two_renders_generate_different_ones(offline_helm: Helm) -> None:
    first = _secrets(offline_helm.template(RELEASE, NAMESPACE))
    second = _secrets(offline_helm.template(RELEASE, NAMESPACE))
    for name, keys in (
        (f"{RELEASE}-auth", ("admin-password", "metrics-token")),
        (f"{RELEASE}-jwt-key", ("private-key.pem",)),
        (f"{RELEASE}-postgresql", ("password",)),
        (f"{RELEASE}-minio", ("access-key", "secret-key")),
        (f"{RELEASE}-contract-webhook", ("tls.key",)),
        (f"{RELEASE}-webhook-client", ("ca.crt", "tls.key")),
    ):
        for key in keys:
            assert first[name][key] != second[name][key], f"{name}/{key} is fixed"


def test_webhooks_are_the_contract_service_s_own_configurations(
    rendered: list[dict[str, Any]],
) -> None:
    tls = _secrets(rendered)[f"{RELEASE}-contract-webhook"]
    selector = {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ]
    }
    arguments: dict[str, Any] = {
        "ca_bundle": tls["ca.crt"].encode(),
        "service": (NAMESPACE, f"{RELEASE}-contract", 8443),
        "namespace_selector": selector,
        "name": f"{RELEASE}-contract",
    }
    for kind, build in (
        ("ValidatingWebhookConfiguration", build_webhook_configuration),
        ("MutatingWebhookConfiguration", build_mutating_webhook_configuration),
    ):
        webhook = find(rendered, kind, f"{RELEASE}-contract")
        assert webhook["webhooks"] == build(**arguments)["webhooks"], kind


def _pod_templates(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        f"{obj['kind']}/{obj['metadata']['name']}": obj["spec"]["template"]
        for obj in objects
        if obj["kind"] in ("Deployment", "StatefulSet")
    }


def test_a_changed_setting_changes_only_its_component_s_pods(
    offline_helm: Helm, rendered: list[dict[str, Any]]
) -> None:
    before = _pod_templates(rendered)
    after = _pod_templates(
        offline_helm.template(RELEASE, NAMESPACE, {"gateway": {"upstreamReadTimeout": 120}})
    )
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {f"Deployment/{RELEASE}-gateway"}


def _exposed_names() -> set[str]:
    names: set[str] = set()
    for family in GatewayMetrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, [""])}
    return names


def test_the_dashboard_charts_the_gateway_s_real_metrics(rendered: list[dict[str, Any]]) -> None:
    config = find(rendered, "ConfigMap", f"{RELEASE}-dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["modelserve-gateway.json"])
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for query in queries for name in re.findall(r"modelserve_gateway_\w+", query)}
    assert used and used <= _exposed_names(), used - _exposed_names()
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert len(families) >= 10
    assert len(dashboard["panels"]) >= 10


def test_probes_ask_each_component_s_health_endpoint(rendered: list[dict[str, Any]]) -> None:
    expected = {"operator": ("/healthz", "health", 8210)}
    for component in COMPONENTS:
        (container,) = _deployment(rendered, component)["spec"]["template"]["spec"]["containers"]
        path, port_name, port = expected.get(component, ("/health", "http", 0))
        # The services are ready when their dependencies answer (/ready), alive when
        # they answer at all (/health).
        ready = "/ready" if component in SERVICES else path
        assert container["readinessProbe"]["httpGet"] == {"path": ready, "port": port_name}
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": path, "port": port_name}
        ports = {item["name"]: item["containerPort"] for item in container["ports"]}
        wanted = {"gateway": 8200, "contract": 8201, "download": 8202, "jobs": 8203}.get(
            component, port
        )
        assert ports[port_name] == wanted
        assert container["resources"]["requests"]


def test_services_drain_before_they_stop_and_log_json(rendered: list[dict[str, Any]]) -> None:
    """The preStop sleep lets the endpoints drop a pod before SIGTERM; the pod's grace
    outlasts the sleep and the service's own grace for requests in flight."""
    for component in SERVICES:
        pod = _deployment(rendered, component)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
        config = find(rendered, "ConfigMap", f"{RELEASE}-{component}")["data"]
        prefix = component.upper()
        assert config[f"{prefix}_LOG_FORMAT"] == "json"
        grace = int(config[f"{prefix}_SHUTDOWN_GRACE_SECONDS"])
        assert grace == 30
        assert pod["terminationGracePeriodSeconds"] > 5 + grace


def test_optional_objects_follow_their_switches(offline_helm: Helm) -> None:
    objects = offline_helm.template(
        RELEASE,
        NAMESPACE,
        {
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
            "networkPolicy": {"enabled": False},
            "ingressRoute": {"host": "llm.example.com", "tls": {"enabled": True}},
            "dashboards": {"enabled": False},
        },
    )
    monitor = find(objects, "ServiceMonitor", f"{RELEASE}-gateway")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["authorization"]["credentials"] == {
        "name": f"{RELEASE}-auth",
        "key": "metrics-token",
    }
    assert not [obj for obj in objects if obj["kind"] == "NetworkPolicy"]
    assert not [obj for obj in objects if obj["metadata"]["name"].endswith("-dashboard")]
    route = find(objects, "IngressRoute")
    assert route["spec"]["routes"][0]["match"] == "Host(`llm.example.com`) && PathPrefix(`/`)"
    assert "tls" in route["spec"]


def test_component_switches_leave_the_others_alone(offline_helm: Helm) -> None:
    infra = offline_helm.template(
        RELEASE,
        NAMESPACE,
        {name: {"enabled": False} for name in COMPONENTS},
        extra=("--set", "contract.enabled=false"),
    )
    workloads = {
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in infra
        if "spec" in obj and "template" in obj["spec"]
    }
    assert workloads == {f"StatefulSet/{RELEASE}-postgresql", f"StatefulSet/{RELEASE}-minio"}
    assert not [obj for obj in infra if obj["kind"].endswith("WebhookConfiguration")]


@pytest.mark.kube
def test_the_api_server_accepts_every_rendered_object(
    cluster_helm: Helm, crds: KubeCluster, namespace: str
) -> None:
    # The server namespaces must exist for their Roles (the chart makes them on install;
    # a dry run makes nothing): the test's own namespace.
    manifest = cluster_helm(
        "template",
        f"modelserve-{namespace}",
        str(CHART),
        "--namespace",
        namespace,
        "--set-json",
        "serverNamespaces=[]",
    )
    out = crds.kubectl("apply", "--dry-run=server", stdin=manifest)
    kinds = {line.split("/")[0] for line in out.splitlines()}
    assert {
        "deployment.apps",
        "statefulset.apps",
        "validatingwebhookconfiguration.admissionregistration.k8s.io",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io",
        "ingressroute.traefik.io",
        "networkpolicy.networking.k8s.io",
        "role.rbac.authorization.k8s.io",
        "rolebinding.rbac.authorization.k8s.io",
        "pod",
    } <= kinds


def _documented_keys() -> Iterator[tuple[str, bool]]:
    """Each key of values.yaml that the schema describes (its dotted path), and whether a
    comment line precedes it. Keys inside free-form maps (resources, labels) are not."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    stack: list[tuple[int, str, dict[str, Any]]] = [(-1, "", schema)]
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        match = re.match(r"^( *)([A-Za-z_][\w-]*):", line)
        if match:
            indent, key = len(match[1]), match[2]
            while stack[-1][0] >= indent:
                stack.pop()
            path = f"{stack[-1][1]}.{key}".lstrip(".")
            node = stack[-1][2].get("properties", {}).get(key)
            if node is not None:
                yield path, previous.lstrip().startswith("#")
            stack.append((indent, path, node or {}))
        if line.strip():
            previous = line


def test_every_value_is_documented() -> None:
    keys = dict(_documented_keys())
    assert len(keys) > 150
    assert [key for key, commented in keys.items() if not commented] == []


def test_the_web_ui_can_be_turned_off(
    offline_helm: Helm, clean_environment: pytest.MonkeyPatch
) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, {"gateway": {"ui": {"enabled": False}}})
    env = _environment(objects, "gateway", {})
    assert env["GATEWAY_UI_DIR"] == ""
    for name, value in env.items():
        clean_environment.setenv(name, value)
    settings: Any = SETTINGS["gateway"]()
    assert settings.ui_dir is None  # /ui answers 404 ui_not_installed
