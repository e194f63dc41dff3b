"""The chart's trust boundaries, as rendered (issue 14, items 9 and 10): who holds the
token signing key, who may read Secrets where, and who may open connections to what.

Each test reads the objects `helm template` renders, as the API server would get them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.helm import CHART, Helm, find
from modelserve.testbed.kube import KubeCluster

RELEASE = "modelserve"
NAMESPACE = "modelserve"
# The contract service's default allowed namespaces, and the release's own.
SERVER_NAMESPACES = ["default", "inference", NAMESPACE]
ACCOUNTS = {
    component: f"system:serviceaccount:{NAMESPACE}:{RELEASE}-{component}"
    for component in ("operator", "gateway", "contract", "download", "jobs")
}
SERVER_SELECTOR = {"app.kubernetes.io/managed-by": "modelserve-operator"}

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def rendered(offline_helm: Helm) -> Objects:
    return offline_helm.template(RELEASE, NAMESPACE)


def _of(objects: Objects, kind: str) -> Objects:
    return [obj for obj in objects if obj["kind"] == kind]


def _subjects(binding: dict[str, Any]) -> set[str]:
    return {
        f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
        for subject in binding.get("subjects", [])
        if subject["kind"] == "ServiceAccount"
    }


def _grants_secrets(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        rule
        for rule in rules
        if {"", "*"} & set(rule.get("apiGroups", []))
        and {"secrets", "*"} & set(rule.get("resources", []))
    ]


def _cluster_wide_rules(objects: Objects, account: str) -> list[dict[str, Any]]:
    """Every rule that a ClusterRoleBinding gives `account`, in every namespace."""
    roles = {role["metadata"]["name"]: role for role in _of(objects, "ClusterRole")}
    rules: list[dict[str, Any]] = []
    for binding in _of(objects, "ClusterRoleBinding"):
        if account in _subjects(binding):
            rules += roles[binding["roleRef"]["name"]]["rules"]
    return rules


def _namespaced_rules(objects: Objects, account: str) -> dict[str, list[dict[str, Any]]]:
    """The rules that RoleBindings give `account`, by namespace."""
    roles = {
        (role["metadata"]["namespace"], role["metadata"]["name"]): role
        for role in _of(objects, "Role")
    }
    found: dict[str, list[dict[str, Any]]] = {}
    for binding in _of(objects, "RoleBinding"):
        if account in _subjects(binding):
            namespace = binding["metadata"]["namespace"]
            assert binding["roleRef"]["kind"] == "Role", binding["metadata"]
            role = roles[(namespace, binding["roleRef"]["name"])]
            found.setdefault(namespace, []).extend(role["rules"])
    return found


# --- item 10: no cluster-wide Secret read ---------------------------------------------


@pytest.mark.parametrize("component", ["operator", "gateway", "contract", "download", "jobs"])
def test_no_component_may_touch_secrets_in_every_namespace(
    rendered: Objects, component: str
) -> None:
    rules = _cluster_wide_rules(rendered, ACCOUNTS[component])
    assert _grants_secrets(rules) == []
    for role in _of(rendered, "ClusterRole"):
        assert _grants_secrets(role["rules"]) == [], role["metadata"]["name"]


def test_the_operator_writes_secrets_only_in_the_server_namespaces(rendered: Objects) -> None:
    granted = _namespaced_rules(rendered, ACCOUNTS["operator"])
    assert sorted(granted) == sorted(SERVER_NAMESPACES)
    for namespace, rules in granted.items():
        (rule,) = _grants_secrets(rules)
        # Per-ModelServe Secrets (the fetch step's): written, read and deleted by name; an
        # external server's API-key Secret: read by name. Never listed or watched.
        assert sorted(rule["verbs"]) == ["create", "delete", "get", "patch"]
        assert "resourceNames" not in rule, namespace


def test_the_gateway_only_reads_secrets_by_name_in_the_server_namespaces(
    rendered: Objects,
) -> None:
    granted = _namespaced_rules(rendered, ACCOUNTS["gateway"])
    assert sorted(granted) == sorted(SERVER_NAMESPACES)
    for rules in granted.values():
        (rule,) = _grants_secrets(rules)
        assert rule["verbs"] == ["get"]


def test_the_contract_download_and_jobs_services_touch_no_secrets(rendered: Objects) -> None:
    for component in ("contract", "download", "jobs"):
        assert _namespaced_rules(rendered, ACCOUNTS[component]) == {}


def test_the_operator_and_gateway_watch_only_where_they_may_read(rendered: Objects) -> None:
    operator = find(rendered, "ConfigMap", f"{RELEASE}-operator")["data"]
    gateway = find(rendered, "ConfigMap", f"{RELEASE}-gateway")["data"]
    assert operator["OPERATOR_NAMESPACES"].split(",") == SERVER_NAMESPACES
    assert gateway["GATEWAY_WATCH_NAMESPACES"].split(",") == SERVER_NAMESPACES


def test_server_namespaces_are_a_value(offline_helm: Helm) -> None:
    objects = offline_helm.template(RELEASE, NAMESPACE, {"serverNamespaces": ["team-a"]})
    expected = ["team-a", NAMESPACE]
    assert sorted(_namespaced_rules(objects, ACCOUNTS["operator"])) == sorted(expected)
    assert sorted(_namespaced_rules(objects, ACCOUNTS["gateway"])) == sorted(expected)
    operator = find(objects, "ConfigMap", f"{RELEASE}-operator")["data"]
    assert operator["OPERATOR_NAMESPACES"] == "team-a,modelserve"
    policies = {
        (obj["metadata"]["namespace"], obj["metadata"]["name"])
        for obj in _of(objects, "NetworkPolicy")
        if obj["spec"]["podSelector"] == {"matchLabels": SERVER_SELECTOR}
    }
    assert policies == {(namespace, f"{RELEASE}-model-servers") for namespace in expected}


# --- item 9: only the gateway holds the signing key ------------------------------------


def _pod_spec(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, kind, name)["spec"]["template"]["spec"]
    return spec


def _secret_names(pod: dict[str, Any]) -> set[str]:
    """Every Secret a pod spec reads: volumes, env and envFrom of all its containers."""
    names = {vol["secret"]["secretName"] for vol in pod.get("volumes", []) if "secret" in vol}
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    return names


def _config(objects: Objects, component: str) -> dict[str, str]:
    data: dict[str, str] = find(objects, "ConfigMap", f"{RELEASE}-{component}")["data"]
    return data


def _env_names(objects: Objects, component: str) -> set[str]:
    (container,) = _pod_spec(objects, "Deployment", f"{RELEASE}-{component}")["containers"]
    return {var["name"] for var in container.get("env", [])} | set(_config(objects, component))


def test_rs256_by_default_and_only_the_gateway_mounts_the_private_key(
    rendered: Objects,
) -> None:
    key_secret = f"{RELEASE}-jwt-key"
    pem = base64.b64decode(find(rendered, "Secret", key_secret)["data"]["private-key.pem"])
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, RSAPrivateKey) and key.key_size >= 2048

    readers = {
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in rendered
        if obj["kind"] in ("Deployment", "StatefulSet", "Pod")
        and key_secret
        in _secret_names(obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"])
    }
    assert readers == {f"Deployment/{RELEASE}-gateway"}
    gateway = _config(rendered, "gateway")
    assert gateway["JWT_ALGORITHM"] == "RS256"
    assert gateway["JWT_PRIVATE_KEY_FILE"].startswith("/")
    (container,) = _pod_spec(rendered, "Deployment", f"{RELEASE}-gateway")["containers"]
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    (mount,) = [
        m for m in mounts.values() if gateway["JWT_PRIVATE_KEY_FILE"].startswith(m["mountPath"])
    ]
    assert mount["readOnly"] is True


@pytest.mark.parametrize("component", ["contract", "download", "jobs"])
def test_the_verifying_services_get_the_key_set_not_a_secret(
    rendered: Objects, component: str
) -> None:
    assert "JWT_SECRET" not in _env_names(rendered, component)
    assert "JWT_PRIVATE_KEY_FILE" not in _env_names(rendered, component)
    pod = _pod_spec(rendered, "Deployment", f"{RELEASE}-{component}")
    if component == "jobs":
        # Only the key of its own service token (see the next test), no other credential.
        assert _auth_keys(pod) == {"service-secret"}
    else:
        # Only the metrics token their /metrics asks for (a secretKeyRef gives the pod that
        # one key), no other credential.
        assert _auth_keys(pod) == {"metrics-token"}
        mounted = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        whole = {
            source["secretRef"]["name"]
            for container in pod.get("containers", []) + pod.get("initContainers", [])
            for source in container.get("envFrom", [])
            if "secretRef" in source
        }
        assert f"{RELEASE}-auth" not in mounted | whole
        assert "JWT_SERVICE_SECRET" not in _env_names(rendered, component)
    assert f"{RELEASE}-jwt-key" not in _secret_names(pod)
    config = _config(rendered, component)
    assert config["JWT_ALGORITHM"] == "RS256"
    assert config["JWT_JWKS_URL"] == (
        f"http://{RELEASE}-gateway.{NAMESPACE}.svc:8200/.well-known/jwks.json"
    )
    # API keys and revocations: asked of the gateway, through its Service.
    assert config["JWT_GATEWAY_URL"] == f"http://{RELEASE}-gateway.{NAMESPACE}.svc:8200"
    # The services accept it: RS256 with a key set to verify against, no secret at all.
    settings = TokenSettings.model_validate(
        {name[4:].lower(): value for name, value in config.items() if name.startswith("JWT_")}
    )
    assert settings.algorithm == "RS256" and settings.jwks_url == config["JWT_JWKS_URL"]


def _auth_keys(pod: dict[str, Any]) -> set[str]:
    """The keys of the auth Secret that a pod spec's containers read."""
    return {
        var["valueFrom"]["secretKeyRef"]["key"]
        for container in pod.get("containers", [])
        for var in container.get("env", [])
        if var.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == f"{RELEASE}-auth"
    }


def test_rs256_the_jobs_service_signs_its_own_token_with_the_service_secret(
    rendered: Objects,
) -> None:
    """Only the jobs service (which signs) and the gateway (which checks) read it; it is
    generated, long enough, and a user's token signed with it is refused (tests/common/
    test_tokens.py)."""
    secret = base64.b64decode(find(rendered, "Secret", f"{RELEASE}-auth")["data"]["service-secret"])
    assert len(secret) >= 32
    for component in ("gateway", "jobs"):
        pod = _pod_spec(rendered, "Deployment", f"{RELEASE}-{component}")
        assert "service-secret" in _auth_keys(pod)


def test_the_gateway_signs_with_the_generated_key(rendered: Objects, tmp_path: Any) -> None:
    pem = base64.b64decode(
        find(rendered, "Secret", f"{RELEASE}-jwt-key")["data"]["private-key.pem"]
    )
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    signer = TokenSigner.from_settings(TokenSettings(algorithm="RS256", private_key_file=path))
    assert signer.public_jwks()["keys"][0]["alg"] == "RS256"


def test_a_given_private_key_is_used_and_hs256_stays_possible(offline_helm: Helm) -> None:
    objects = offline_helm.template(
        RELEASE, NAMESPACE, {"auth": {"privateKey": {"existingSecret": "my-signing-key"}}}
    )
    assert not [
        obj for obj in _of(objects, "Secret") if obj["metadata"]["name"].endswith("-jwt-key")
    ]
    gateway = _pod_spec(objects, "Deployment", f"{RELEASE}-gateway")
    assert "my-signing-key" in _secret_names(gateway)
    for component in ("contract", "download", "jobs"):
        assert "my-signing-key" not in _secret_names(
            _pod_spec(objects, "Deployment", f"{RELEASE}-{component}")
        )

    hs256 = offline_helm.template(RELEASE, NAMESPACE, {"auth": {"algorithm": "HS256"}})
    assert not [obj for obj in _of(hs256, "Secret") if obj["metadata"]["name"].endswith("-jwt-key")]
    for component in ("gateway", "contract", "download", "jobs"):
        assert _config(hs256, component)["JWT_ALGORITHM"] == "HS256"
        assert "JWT_SECRET" in _env_names(hs256, component)
        assert "JWT_JWKS_URL" not in _config(hs256, component)


# --- item 10: who may connect to what --------------------------------------------------


def _policies(objects: Objects) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (obj["metadata"]["namespace"], obj["metadata"]["name"]): obj["spec"]
        for obj in _of(objects, "NetworkPolicy")
    }


def _component(component: str) -> dict[str, Any]:
    return {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "modelserve",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": component,
            }
        },
    }


def _in_release_namespace(component: str) -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
        **_component(component),
    }


def test_model_servers_accept_only_the_gateway(rendered: Objects) -> None:
    policies = _policies(rendered)
    for namespace in SERVER_NAMESPACES:
        spec = policies[(namespace, f"{RELEASE}-model-servers")]
        assert spec["podSelector"] == {"matchLabels": SERVER_SELECTOR}
        assert spec["policyTypes"] == ["Ingress"]
        (rule,) = spec["ingress"]
        assert rule["from"] == [_in_release_namespace("gateway")]
        # vLLM's and llama.cpp's ports (OPERATOR_VLLM_PORT, OPERATOR_LLAMACPP_PORT).
        assert sorted(port["port"] for port in rule["ports"]) == [8000, 8080]


def test_minio_accepts_only_the_platform_and_the_servers_fetch_step(rendered: Objects) -> None:
    spec = _policies(rendered)[(NAMESPACE, f"{RELEASE}-minio")]
    (rule,) = spec["ingress"]
    assert [port["port"] for port in rule["ports"]] == [9000]
    servers = {
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": SERVER_NAMESPACES,
                }
            ]
        },
        "podSelector": {"matchLabels": SERVER_SELECTOR},
    }
    assert rule["from"] == [
        _component("download"),
        _component("jobs"),
        _component("operator"),
        servers,
    ]


def test_the_webhook_port_is_not_open_to_every_pod(offline_helm: Helm, rendered: Objects) -> None:
    spec = _policies(rendered)[(NAMESPACE, f"{RELEASE}-contract")]
    api = [rule for rule in spec["ingress"] if [p["port"] for p in rule["ports"]] == [8201]]
    assert api == [
        {
            "ports": [{"port": 8201, "protocol": "TCP"}],
            "from": [_component("gateway"), _component("download")],
        }
    ]
    webhook = [rule for rule in spec["ingress"] if [p["port"] for p in rule["ports"]] == [8443]]
    # No pod selector can name the API server: by default the port is reachable, and the
    # client certificate the contract service asks for is the control; a value narrows it.
    control_plane = [{"ipBlock": {"cidr": "172.18.0.0/16"}}]
    narrowed = offline_helm.template(
        RELEASE, NAMESPACE, {"networkPolicy": {"webhookFrom": control_plane}}
    )
    spec = _policies(narrowed)[(NAMESPACE, f"{RELEASE}-contract")]
    webhook = [rule for rule in spec["ingress"] if [p["port"] for p in rule["ports"]] == [8443]]
    assert webhook == [{"ports": [{"port": 8443, "protocol": "TCP"}], "from": control_plane}]


# --- the same, asked of the real API server --------------------------------------------

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def _allowed(kube: KubeCluster, account: str, verb: str, namespace: str) -> bool:
    """Whether the API server lets `account` `verb` Secrets in `namespace` ("": in every
    namespace), as it would decide a real request (a SubjectAccessReview)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": account,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "resource": "secrets", "namespace": namespace},
        },
    }
    answer = json.loads(kube.kubectl("create", "-o", "json", stdin=json.dumps(review)))
    return bool(answer["status"].get("allowed"))


def apply_rbac(
    helm: Helm, kube: KubeCluster, release: str, namespace: str, servers: str
) -> list[dict[str, Any]]:
    """The chart's accounts and RBAC objects of `release` (installed in `namespace`, with
    ModelServes in `servers`), applied to the cluster; they are returned."""
    objects = helm.template(release, namespace, {"serverNamespaces": [servers]}, chart=CHART)
    kept = [obj for obj in objects if obj["kind"] in RBAC_KINDS]
    kube.kubectl("apply", stdin=yaml.safe_dump_all(kept))
    return kept


def _account(objects: Objects, component: str) -> str:
    (account,) = [
        obj["metadata"]
        for obj in _of(objects, "ServiceAccount")
        if obj["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return f"system:serviceaccount:{account['namespace']}:{account['name']}"


@pytest.mark.kube
def test_the_api_server_refuses_secrets_outside_the_server_namespaces(
    offline_helm: Helm, crds: KubeCluster, namespace: str
) -> None:
    """The attack: a tenant's ModelServe names a Secret of another namespace (or the
    platform's credentials), hoping the operator or the gateway reads it for them."""
    servers = f"{namespace}-servers"
    crds.kubectl("create", "namespace", servers)
    applied: list[dict[str, Any]] = []
    try:
        applied = apply_rbac(offline_helm, crds, f"rbac-{namespace}", namespace, servers)
        operator, gateway = _account(applied, "operator"), _account(applied, "gateway")
        for verb in ("get", "list", "watch"):
            for where in ("kube-system", "default", ""):
                assert not _allowed(crds, operator, verb, where), (verb, where)
                assert not _allowed(crds, gateway, verb, where), (verb, where)
        for where in (servers, namespace):
            assert _allowed(crds, operator, "create", where)
            assert _allowed(crds, operator, "get", where)
            assert _allowed(crds, gateway, "get", where)
            assert not _allowed(crds, gateway, "list", where)
    finally:
        cluster_wide = [
            f"{obj['kind'].lower()}/{obj['metadata']['name']}"
            for obj in applied
            if obj["kind"] in ("ClusterRole", "ClusterRoleBinding")
        ]
        if cluster_wide:
            crds.kubectl("delete", *cluster_wide, "--ignore-not-found")
        crds.kubectl("delete", "namespace", servers, "--ignore-not-found", "--wait=false")


# --- item 1: the webhook takes only the API server --------------------------------------


def _contract_pod(objects: Objects) -> dict[str, Any]:
    return _pod_spec(objects, "Deployment", f"{RELEASE}-contract")


def _client_ca_volume(objects: Objects) -> dict[str, Any]:
    pod = _contract_pod(objects)
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "webhook-client-ca"]
    config = _config(objects, "contract")
    assert config["CONTRACT_WEBHOOK_CLIENT_CA_FILE"] == f"{mount['mountPath']}/ca.crt"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webhook-client-ca"]
    secret: dict[str, Any] = volume["secret"]
    return secret


def test_the_webhook_trusts_a_client_ca_and_never_mounts_its_key(rendered: Objects) -> None:
    """Without a client CA the contract service refuses to start (and before it, anyone
    who reached 8443 was taken for the API server): the chart always gives one."""
    volume = _client_ca_volume(rendered)
    assert volume["secretName"] == f"{RELEASE}-webhook-client"
    assert volume["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    config = _config(rendered, "contract")
    assert config["CONTRACT_WEBHOOK_CLIENT_NAMES"] == "kube-apiserver-webhook-client"
    # Made by the chart: a CA and the API server's client certificate, of that name.
    client = find(rendered, "Secret", f"{RELEASE}-webhook-client")["data"]
    authority = x509.load_pem_x509_certificate(base64.b64decode(client["ca.crt"]))
    certificate = x509.load_pem_x509_certificate(base64.b64decode(client["tls.crt"]))
    certificate.verify_directly_issued_by(authority)
    (name,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert name.value == "kube-apiserver-webhook-client"
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages


def test_a_given_client_ca_is_used(offline_helm: Helm) -> None:
    authority = find(
        offline_helm.template(RELEASE, NAMESPACE), "Secret", f"{RELEASE}-webhook-client"
    )["data"]["ca.crt"]
    pem = base64.b64decode(authority).decode()
    webhook = {"clientCA": {"pem": pem}, "clientNames": ["apiserver", "apiserver-2"]}
    objects = offline_helm.template(RELEASE, NAMESPACE, {"contract": {"webhook": webhook}})
    client = find(objects, "Secret", f"{RELEASE}-webhook-client")["data"]
    assert set(client) == {"ca.crt"} and client["ca.crt"] == authority
    assert _config(objects, "contract")["CONTRACT_WEBHOOK_CLIENT_NAMES"] == "apiserver,apiserver-2"

    existing = {"clientCA": {"existingSecret": "apiserver-ca", "existingSecretKey": "pem"}}
    objects = offline_helm.template(RELEASE, NAMESPACE, {"contract": {"webhook": existing}})
    assert not [o for o in _of(objects, "Secret") if o["metadata"]["name"].endswith("-client")]
    volume = _client_ca_volume(objects)
    assert volume["secretName"] == "apiserver-ca"
    assert volume["items"] == [{"key": "pem", "path": "ca.crt"}]


def test_a_new_signing_key_rolls_the_gateway(offline_helm: Helm) -> None:
    """The key is read at start: a key given by value is in the pod template's checksum."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    def checksum(values: dict[str, Any]) -> str:
        objects = offline_helm.template(RELEASE, NAMESPACE, values)
        gateway = find(objects, "Deployment", f"{RELEASE}-gateway")
        annotation: str = gateway["spec"]["template"]["metadata"]["annotations"]["checksum/jwt-key"]
        return annotation

    assert checksum({}) != checksum({"auth": {"privateKey": {"pem": pem}}})


# --- item 8: a default budget cap ------------------------------------------------------


def test_the_chart_caps_the_scaling_budget_by_default(rendered: Objects) -> None:
    assert _config(rendered, "contract")["CONTRACT_DEFAULT_MAX_BUDGET"] == "16"
