"""Fixtures for the contract service: the real service, on real PostgreSQL, as processes."""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from modelserve.common.modelserve import GROUP, KIND, PLURAL, VERSION
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import (
    RunningContract,
    RunningService,
    install_crds,
    start_contract,
    start_service,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import create_schema, drop_schema, schema_url
from modelserve.testbed.testing_clients import token_clients

SECRET = "contract-tests-secret-of-at-least-32-bytes"


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    return TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))


@pytest.fixture(scope="session")
def contract_database(database_url: str) -> str:
    """The contract service's tables in a schema of their own."""
    return schema_url(database_url, create_schema(database_url, "contract"))


def contract_settings(database: str, **more: str) -> dict[str, str]:
    return {
        "CONTRACT_DATABASE_URL": database,
        "JWT_SECRET": SECRET,
        "CONTRACT_INVENTORY_SECONDS": "0",
        **more,
    }


@pytest.fixture(scope="session")
def contract_environment(contract_database: str) -> Callable[..., dict[str, str]]:
    """`contract_environment(**more)`: the settings of a contract service of the tests."""
    return functools.partial(contract_settings, contract_database)


@pytest.fixture(scope="session")
def contract(contract_database: str, testbed_dir: Path) -> Iterator[RunningService]:
    """One contract service for the tests that need no cluster."""
    service = start_service("contract", testbed_dir / "logs", contract_settings(contract_database))
    yield service
    service.stop()


@pytest.fixture
def client(contract: RunningService, signer: TokenSigner) -> Iterator[Callable[..., httpx.Client]]:
    """`client(subject, roles=…, teams=…)`: an HTTP client with that person's token."""
    with token_clients(signer) as make:

        def as_person(
            subject: str, roles: tuple[str, ...] = (), teams: tuple[str, ...] = ()
        ) -> httpx.Client:
            return make(contract.url, subject, roles, teams)

        yield as_person


@pytest.fixture
def gateway(contract: RunningService, signer: TokenSigner) -> Iterator[httpx.Client]:
    """A client of `contract` with a service token, as the gateway has."""
    with token_clients(signer) as make:
        yield make(contract.url, "service:gateway", roles=("service",))


@pytest.fixture
def admin(contract: RunningService, signer: TokenSigner) -> Iterator[httpx.Client]:
    """A client of `contract` with an admin's token."""
    with token_clients(signer) as make:
        yield make(contract.url, "root", roles=("admin",))


@pytest.fixture
def user() -> str:
    """A user name no other test uses: contracts and counters are per user."""
    return f"u-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def contract_replicas(
    contract: RunningService, contract_database: str, testbed_dir: Path
) -> Iterator[list[RunningService]]:
    """Two replicas of the service on the same database, as behind a Kubernetes Service."""
    second = start_service("contract", testbed_dir / "logs", contract_settings(contract_database))
    yield [contract, second]
    second.stop()


# --- The admission webhook, asked by the test bed's real API server ---------------------

# Only namespaces with this label send their ModelServe writes to the tests' webhook, so that
# no other test of the session meets it.
ENFORCED = {"contract.modelserve.io/test": "enforced"}
# The Kubernetes group of the tests' people: RBAC lets it write ModelServes, nothing more.
TESTERS = "modelserve-contract-testers"
GATEWAY_ACCOUNT = "modelserve-gateway"


@pytest.fixture(scope="session")
def modelserve_crd(kube: KubeCluster) -> KubeCluster:
    """The cluster with the ModelServe CRD established (`crds` of tests/operator)."""
    install_crds(kube)
    return kube


@dataclasses.dataclass(frozen=True)
class AdmissionBed:
    """The contract service registered as the API server's ModelServe admission webhook."""

    kube: KubeCluster
    service: RunningService
    admin_token: str
    cluster_role: str
    gateway_user: str  # the delegating Kubernetes user: the gateway's service account
    gateway_kubeconfig: Path
    webhook_url: str  # https://127.0.0.1:<port>, for the API server's certificate only
    platform_namespace: str  # CONTRACT_PLATFORM_NAMESPACES: platform admins only

    def put_contract(self, user: str, **limits: Any) -> None:
        """Replace `user`'s contract (limits left out: the defaults apply)."""
        response = httpx.put(
            f"{self.service.url}/contracts/user/{user}",
            json=limits,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text

    def kubeconfig(self, user: str, teams: tuple[str, ...] = ()) -> Path:
        """Credentials of the person `user` (in `teams`), who may write ModelServes where
        RBAC binds them."""
        groups = (TESTERS, *(f"modelserve:team:{team}" for team in teams))
        return self.kube.user_kubeconfig(user, groups)

    def admin_kubeconfig(self) -> Path:
        """Credentials of a platform admin (CONTRACT_ADMIN_GROUPS), bound like the testers."""
        return self.kube.user_kubeconfig("platform-admin", (TESTERS, "modelserve:admins"))


def _probe_modelserve() -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": "probe"},
            "spec": {"runtime": "llamacpp", "model": {"uri": "s3://models/probe.gguf"}},
        }
    )


def _refused_by_webhook(kube: KubeCluster, namespace: str) -> bool:
    """Whether the webhook is live: it refuses the admin, who has no contract (a dry run)."""
    try:
        kube.kubectl("create", "--dry-run=server", "-n", namespace, stdin=_probe_modelserve())
    except RuntimeError as error:
        return "denied the request" in str(error)
    return False


@pytest.fixture(scope="module")
def admission(
    modelserve_crd: KubeCluster,
    database_url: str,
    testbed_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    signer: TokenSigner,
) -> Iterator[AdmissionBed]:
    """A contract service of its own (schema, TLS, inventory of the cluster) registered as
    the validating webhook for ModelServes in namespaces labelled ENFORCED; deregistered
    before it stops. Without a contract nobody may run servers anywhere."""
    kube = modelserve_crd
    suffix = uuid.uuid4().hex[:8]
    schema = create_schema(database_url, "contract_admission")
    gateway_namespace = f"gateway-{suffix}"
    probe_namespace = f"probe-{suffix}"
    cluster_role = f"modelserve-contract-test-{suffix}"
    webhook_name = f"modelserve-contract-test-{suffix}"
    kube.kubectl("create", "namespace", gateway_namespace)
    kube.kubectl("create", "serviceaccount", GATEWAY_ACCOUNT, "-n", gateway_namespace)
    kube.kubectl("create", "namespace", probe_namespace)
    kube.kubectl("label", "namespace", probe_namespace, *(f"{k}={v}" for k, v in ENFORCED.items()))
    kube.kubectl(
        "create",
        "clusterrole",
        cluster_role,
        "--verb=get,list,watch,create,update,patch,delete",
        f"--resource={PLURAL}.{GROUP},{PLURAL}.{GROUP}/scale",
    )
    gateway_user = f"system:serviceaccount:{gateway_namespace}:{GATEWAY_ACCOUNT}"
    platform_namespace = f"platform-{suffix}"
    contract: RunningContract | None = None
    try:
        # The inventory lists ModelServes as the service's own account: its RBAC is tested too.
        contract = start_contract(
            kube,
            testbed_dir,
            schema_url(database_url, schema),
            contract_settings(
                schema_url(database_url, schema),
                CONTRACT_DELEGATING_USERS=gateway_user,
                CONTRACT_DEFAULT_NAMESPACES="",
                CONTRACT_INVENTORY_SECONDS="5",
                CONTRACT_INVENTORY_GRACE_SECONDS="5",
                CONTRACT_PLATFORM_NAMESPACES=platform_namespace,
            ),
            namespace_selector={"matchLabels": ENFORCED},
            name=webhook_name,
        )
        # The API server picks the configuration up from its informer, a moment later.
        wait_for(
            functools.partial(_refused_by_webhook, kube, probe_namespace),
            timeout=30,
            what="the API server to ask the contract webhook",
        )
        yield AdmissionBed(
            kube=kube,
            service=contract.service,
            admin_token=signer.sign("root", roles=("admin",)),
            cluster_role=cluster_role,
            gateway_user=gateway_user,
            gateway_kubeconfig=kube.service_account_kubeconfig(gateway_namespace, GATEWAY_ACCOUNT),
            webhook_url=contract.webhook_url,
            platform_namespace=platform_namespace,
        )
    finally:
        if contract is not None:
            contract.stop(kube)  # deregistered first, then stopped
        kube.kubectl("delete", "namespace", gateway_namespace, probe_namespace, "--wait=false")
        kube.kubectl("delete", "clusterrole", cluster_role)
        drop_schema(database_url, schema)


def _can_write_modelserves(kube: KubeCluster, namespace: str, *who: str) -> bool:
    try:
        answer = kube.kubectl("auth", "can-i", "create", f"{PLURAL}.{GROUP}", "-n", namespace, *who)
    except RuntimeError:  # "no" exits with 1
        return False
    return answer.strip() == "yes"


@pytest.fixture
def enforced_namespace(admission: AdmissionBed) -> Iterator[Callable[..., str]]:
    """`enforced_namespace(labelled=True)`: a fresh namespace where the tests' people and the
    gateway may write ModelServes; labelled, the webhook judges every write there."""
    kube = admission.kube
    made: list[str] = []

    def make(labelled: bool = True, name: str | None = None) -> str:
        name = name or f"t-{uuid.uuid4().hex[:8]}"
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": ENFORCED if labelled else {}},
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "modelserve-writers", "namespace": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": admission.cluster_role,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": TESTERS},
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": admission.gateway_user,
                },
            ],
        }
        kube.kubectl("apply", stdin=json.dumps(namespace))
        made.append(name)
        kube.kubectl("apply", stdin=json.dumps(binding))
        # RBAC reads bindings from an informer: wait until the API server applies this one.
        for who in (("--as=probe", f"--as-group={TESTERS}"), (f"--as={admission.gateway_user}",)):
            wait_for(
                functools.partial(_can_write_modelserves, kube, name, *who),
                timeout=30,
                what=f"RBAC for {' '.join(who)} in {name}",
            )
        return name

    yield make
    if made:
        kube.kubectl("delete", "namespace", *made, "--wait=false", "--ignore-not-found")
