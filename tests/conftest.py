"""Fixtures that start each real component once per session, with clean state per test.

A component starts the first time a test asks for it, so a run of unit tests
starts nothing. Per test: a fresh namespace, PostgreSQL schema or MinIO bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from minio import Minio

from modelserve.testbed.doc_scripts import DevPlatform, dev_platform
from modelserve.testbed.gobuild import binary
from modelserve.testbed.kube import KubeCluster, start_cluster
from modelserve.testbed.llm import LlmServer, ensure_runtime, start_llm
from modelserve.testbed.objectstores import (
    PLATFORM_BUCKET,
    UPSTREAM_BUCKET,
    MinioServer,
    start_minio,
)
from modelserve.testbed.platform import (
    RunningOperator,
    install_crds,
    operator_kubeconfig,
    start_operator,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import PostgresServer, fresh_schema, start_postgres
from modelserve.testbed.seeding import place_smollm2


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def testbed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("testbed")


# --- Kubernetes -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube(testbed_dir: Path) -> Iterator[KubeCluster]:
    cluster = start_cluster(testbed_dir / "kube")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kube_api(kube: KubeCluster) -> Iterator[k8s.ApiClient]:
    api = k8s_config.new_client_from_config(config_file=str(kube.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def namespace(kube_api: k8s.ApiClient) -> Iterator[str]:
    """A namespace of its own for one test, deleted (with all it holds) afterwards."""
    name = _unique("t")
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    # Pods are refused until the controllers made the namespace's default service account;
    # a ReplicaSet that hits that backs off for up to a minute.
    wait_for(
        lambda: (
            core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        ),
        timeout=30,
        what=f"the default service account of {name}",
    )
    yield name
    core.delete_namespace(name)


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres(testbed_dir: Path) -> Iterator[PostgresServer]:
    server = start_postgres(log_folder=testbed_dir / "logs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres: PostgresServer) -> str:
    """A fresh database for this test session."""
    return postgres.create_database(f"modelserve_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def db_schema(database_url: str) -> Iterator[str]:
    """A schema of its own for one test, dropped with everything in it afterwards."""
    with fresh_schema(database_url) as schema:
        yield schema


# --- MinIO ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def upstream_store(testbed_dir: Path) -> Iterator[MinioServer]:
    """The upstream ("quant") store models come from."""
    server = start_minio("upstream", testbed_dir / "minio", bucket=UPSTREAM_BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def platform_store(testbed_dir: Path) -> Iterator[MinioServer]:
    """The platform's own store that model servers load from."""
    server = start_minio("platform", testbed_dir / "minio", bucket=PLATFORM_BUCKET)
    yield server
    server.stop()


def _fresh_bucket(store: MinioServer) -> Iterator[str]:
    client: Minio = store.client()
    name = _unique("t")
    client.make_bucket(name)
    yield name
    for item in client.list_objects(name, recursive=True):
        client.remove_object(name, item.object_name)
    client.remove_bucket(name)


@pytest.fixture
def upstream_bucket(upstream_store: MinioServer) -> Iterator[str]:
    yield from _fresh_bucket(upstream_store)


@pytest.fixture
def platform_bucket(platform_store: MinioServer) -> Iterator[str]:
    yield from _fresh_bucket(platform_store)


# --- The ModelServe CRD and the operator ---------------------------------------------


@pytest.fixture(scope="session")
def crds(kube: KubeCluster) -> KubeCluster:
    """The cluster, with every CRD of crds/ and Traefik's stand-ins established."""
    install_crds(kube)
    return kube


@pytest.fixture(scope="session")
def smollm2_uri(platform_store: MinioServer) -> str:
    """The SmolLM2 GGUF in the platform store, where the download service puts it (and
    where docs/examples/llamacpp-cpu.yaml looks for it)."""
    return place_smollm2(platform_store, ensure_runtime().model)


def operator_settings(crds: KubeCluster, platform_store: MinioServer) -> dict[str, str]:
    """The operator's settings on the test bed: pods fetch from the platform MinIO (reached
    from the pod network), routes lead to the gateway known to Traefik's file provider."""
    return {
        "OPERATOR_EXTERNAL_PROBE_INTERVAL": "1",
        # llama-cpp-python answers GET /v1/models only between two generations: a probe
        # that arrives during a scaled request's candidates waits its turn.
        "OPERATOR_EXTERNAL_PROBE_TIMEOUT": "60",
        "OPERATOR_MODEL_STORE_ENDPOINT": crds.expose_to_pods(platform_store.port),
        "OPERATOR_MODEL_STORE_ACCESS_KEY": platform_store.access_key,
        "OPERATOR_MODEL_STORE_SECRET_KEY": platform_store.secret_key,
        "OPERATOR_ROUTE_SERVICE": "modelserve-gateway@file",
        # Short requests here: a replaced replica need not wait the production 10 s.
        "OPERATOR_DRAIN_SECONDS": "2",
    }


@pytest.fixture(scope="module")
def operator(
    crds: KubeCluster, testbed_dir: Path, platform_store: MinioServer, smollm2_uri: str
) -> Iterator[RunningOperator]:
    """`modelserve-operator` running against the test cluster, as a process of its own,
    with the credentials of its service account: every test also checks its RBAC.

    One per test module, not per session: the CRD's own tests write status by hand and
    need a cluster where no operator writes it too."""
    running = start_operator(
        operator_kubeconfig(crds), testbed_dir / "logs", operator_settings(crds, platform_store)
    )
    yield running
    running.stop()


# --- The LLM and helm -------------------------------------------------------------------


@pytest.fixture(scope="session")
def llm(testbed_dir: Path) -> Iterator[LlmServer]:
    """llama-cpp-python's server running SmolLM2-135M-Instruct on CPU."""
    server = start_llm(testbed_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def helm() -> Path:
    return binary("helm")


# --- make dev's platform ----------------------------------------------------------------


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevPlatform]:
    """`make dev`'s platform (`modelserve-testbed up` on free ports), once per session for
    every test that needs it: the docs pages whose commands run, the client's workflow."""
    root = Path(__file__).resolve().parents[1]
    with dev_platform(root, tmp_path_factory.mktemp("make-dev")) as platform:
        yield platform
