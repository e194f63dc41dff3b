"""The Makefile's k3d targets (seeds: `make all` and its steps, `make check-deps`, the
operating targets).

Docker cannot run here, so docker and k3d are fakes that print what the real ones print;
kubectl and helm are the test bed's real binaries against its real API server wherever
a target needs no container to actually run.
"""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from modelserve.testbed.gobuild import binary
from modelserve.testbed.kube import KubeCluster

SEED_TARGETS = (
    "all",
    "check-deps",
    "deps",
    "cluster",
    "docker-build",
    "docker-load",
    "infra",
    "operator-deploy",
    "services-deploy",
    "status",
    "logs",
    "port-forward",
    "db-shell",
    "stop",
    "clean",
)
KEPT_TARGETS = ("dev", "test", "lint", "testbed", "venv")
COMPONENTS = ("operator", "gateway", "contract", "download", "jobs")

# The `make` fixture of conftest.py.
MakeRunner = Callable[..., subprocess.CompletedProcess[str]]


def fake_tool(folder: Path, name: str, script: str) -> Path:
    """An executable `name` in `folder` running the POSIX shell `script`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def fake_tools(folder: Path, *, kubectl: str = "v1.31.2", engine: bool = True) -> dict[str, str]:
    """Make variables pointing at fakes that print what each real tool prints."""
    docker = fake_tool(
        folder,
        "docker",
        'case "$1" in\n'
        '  --version) echo "Docker version 27.3.1, build ce12230" ;;\n'
        f"  info) exit {0 if engine else 1} ;;\n"
        "esac",
    )
    k3d = fake_tool(folder, "k3d", 'echo "k3d version v5.7.4"; echo "k3s version v1.30.4-k3s1"')
    kube = fake_tool(folder, "kubectl", f'echo "Client Version: {kubectl}"')
    helm = fake_tool(folder, "helm", 'echo "v3.16.2+g13654a5"')
    node = fake_tool(folder, "node", 'echo "v22.12.0"')
    npm = fake_tool(folder, "npm", 'echo "10.9.0"')
    return {
        "DOCKER": str(docker),
        "K3D": str(k3d),
        "KUBECTL": str(kube),
        "HELM": str(helm),
        # The interpreter of this test run: 3.11 or newer, as pyproject.toml asks.
        "PYTHON": sys.executable,
        "NODE": str(node),
        "NPM": str(npm),
    }


# --- help, and every target of the seeds ---------------------------------------------


def test_help_lists_every_target_of_the_seeds(make: MakeRunner) -> None:
    result = make("help")
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^  ([a-z-]+) ", result.stdout, re.MULTILINE))
    assert set(SEED_TARGETS) | set(KEPT_TARGETS) <= listed


def test_make_alone_prints_the_help(make: MakeRunner) -> None:
    result = make()
    assert result.returncode == 0, result.stderr
    assert "check-deps" in result.stdout


def test_existing_targets_still_run_what_they_ran(make: MakeRunner) -> None:
    lint = make("-n", "lint")
    assert lint.returncode == 0, lint.stderr
    for command in (
        ".venv/bin/ruff check .",
        ".venv/bin/mypy common operator services testbed tests bench",
        ".venv/bin/hadolint Dockerfile",
        ".venv/bin/shellcheck k3d/check-deps.sh k3d/webhook-client.sh",
    ):
        assert command in lint.stdout
    assert ".venv/bin/pytest" in make("-n", "test").stdout
    assert ".venv/bin/modelserve-testbed up" in make("-n", "dev").stdout
    assert ".venv/bin/modelserve-testbed build" in make("-n", "testbed").stdout


# --- make all -------------------------------------------------------------------------


def recipes(stdout: str) -> list[str]:
    """What `make -n` printed, a command a line: continued lines joined."""
    return re.sub(r"\\\n\t*", "", stdout).splitlines()


def helm_switches(line: str) -> dict[str, str]:
    return dict(re.findall(r"--set ([a-z.]+)=(\S+)", line))


def test_make_all_goes_from_nothing_to_the_whole_release_in_order(
    make: MakeRunner, version: str, tmp_path: Path
) -> None:
    # The API server's webhook client certificate, as `make cluster` leaves it.
    certificates = tmp_path / "webhook-client"
    certificates.mkdir()
    (certificates / "ca.crt").write_text("the CA of the API server's client certificate")
    # --always-make: the virtual environment's recipe shows even where .venv is up to date.
    result = make("-n", "--always-make", "all", f"WEBHOOK_CLIENT_DIR={certificates}")
    assert result.returncode == 0, result.stderr
    lines = recipes(result.stdout)

    def first(pattern: str) -> int:
        matches = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert matches, f"no line matches {pattern!r} in:\n{result.stdout}"
        return matches[0]

    image = f"modelserve/modelserve:{version}"
    steps = [
        first(r"sh k3d/check-deps\.sh"),
        first(r"-m venv \.venv"),
        first(r"k3d cluster create inference-cluster --config k3d/cluster\.yaml"),
        first(r"^cd web && npm run build$"),  # the web UI, which the image holds
        first(rf"docker build --build-arg VERSION={re.escape(version)} --tag {image} \.$"),
        first(rf"k3d image import {image} --cluster inference-cluster"),
    ]
    assert steps == sorted(steps)

    installs = [i for i, line in enumerate(lines) if "helm " in line and "upgrade" in line]
    assert len(installs) == 3, result.stdout
    assert installs[0] > steps[-1]
    commands = [lines[i] for i in installs]
    for command in commands:
        assert (
            "helm --kube-context k3d-inference-cluster upgrade --install modelserve "
            "charts/modelserve --namespace modelserve --create-namespace" in command
        )
        assert "--wait" in command
    infra, operator, services = (helm_switches(command) for command in commands)
    for switches in (infra, operator, services):
        assert switches["image.repository"] == "modelserve/modelserve"
        assert switches["image.tag"] == version
        assert switches["postgresql.enabled"] == switches["minio.enabled"] == "true"
    for command in commands:
        # The webhook trusts the CA of the client certificate `make cluster` gave the
        # API server (k3d/webhook-client.sh, mounted by k3d/cluster.yaml).
        assert f"--set-file contract.webhook.clientCA.pem={certificates}/ca.crt" in command
    made = first(rf"sh k3d/webhook-client\.sh {certificates}$")
    created = first(rf"MODELSERVE_WEBHOOK_CLIENT_DIR={certificates} ")
    assert made < created == steps[2]
    assert {c: infra[f"{c}.enabled"] for c in COMPONENTS} == dict.fromkeys(COMPONENTS, "false")
    assert {c: operator[f"{c}.enabled"] for c in COMPONENTS} == {
        "operator": "true",
        "gateway": "false",
        "contract": "false",
        "download": "false",
        "jobs": "false",
    }
    assert {c: services[f"{c}.enabled"] for c in COMPONENTS} == dict.fromkeys(COMPONENTS, "true")


def test_every_step_can_be_pointed_elsewhere(make: MakeRunner, version: str) -> None:
    result = make(
        "-n",
        "docker-build",
        "docker-load",
        "stop",
        "clean",
        "CLUSTER=other",
        "IMAGE_REPOSITORY=registry.example/ms",
        "IMAGE_TAG=dev",
        "DOCKER=/opt/docker",
        "K3D=/opt/k3d",
        "NPM=/opt/npm",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # The web UI is built first (its `npm ci` only where web/node_modules is older than
    # the lockfile), since the image holds it.
    ui = [line for line in lines if line.startswith(("cd web && ", "touch web/"))]
    assert ui[-1] == "cd web && /opt/npm run build" and lines[: len(ui)] == ui
    assert lines[len(ui) :] == [
        # The package version stays the one in pyproject.toml; only the tag changes.
        f"DOCKER_BUILDKIT=1 /opt/docker build --build-arg VERSION={version} "
        "--tag registry.example/ms:dev .",
        "/opt/k3d image import registry.example/ms:dev --cluster other",
        "/opt/k3d cluster stop other",
        "/opt/k3d cluster delete other",
    ]


def test_cluster_starts_an_existing_cluster_and_creates_a_missing_one(
    make: MakeRunner, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    # `k3d cluster get NAME` succeeds only for clusters named in $EXISTING.
    k3d = fake_tool(
        tmp_path / "bin",
        "k3d",
        f'echo "$*" >> {calls}\n'
        'if [ "$1 $2" = "cluster get" ]; then\n'
        '  case " $EXISTING " in *" $3 "*) exit 0 ;; esac\n'
        "  exit 1\n"
        "fi",
    )
    certificates = tmp_path / "webhook-client"
    where = f"WEBHOOK_CLIENT_DIR={certificates}"
    result = make("cluster", f"K3D={k3d}", where, env={"EXISTING": ""})
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "cluster get inference-cluster",
        "cluster create inference-cluster --config k3d/cluster.yaml",
    ]
    # The API server's webhook client certificate, made before the cluster that mounts it.
    assert (certificates / "admission.yaml").is_file() and (certificates / "ca.crt").is_file()
    calls.unlink()
    result = make("cluster", f"K3D={k3d}", where, env={"EXISTING": "inference-cluster"})
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "cluster get inference-cluster",
        "cluster start inference-cluster",
    ]


# --- make check-deps ---------------------------------------------------------------------


def test_check_deps_passes_when_every_tool_is_there(make: MakeRunner, tmp_path: Path) -> None:
    tools = fake_tools(tmp_path / "bin")
    result = make("check-deps", *(f"{k}={v}" for k, v in tools.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (
        "docker   27.3.1",
        "k3d      5.7.4",
        "kubectl  1.31.2",
        "helm     3.16.2",
        "node     22.12.0",
        "npm      10.9.0",
    ):
        assert f"ok       {line}" in result.stdout
    assert "Everything make all needs is installed." in result.stdout


def test_check_deps_names_each_missing_tool_with_its_minimum_and_how_to_install_it(
    make: MakeRunner, tmp_path: Path
) -> None:
    result = make(
        "check-deps",
        "DOCKER=no-such-docker",
        "K3D=no-such-k3d",
        "KUBECTL=no-such-kubectl",
        "HELM=no-such-helm",
        "NODE=no-such-node",
        "NPM=no-such-npm",
    )
    assert result.returncode != 0
    out = result.stdout
    for name, minimum, hint in (
        ("docker", "20.10.0", "https://docs.docker.com/get-docker/"),
        ("k3d", "5.5.0", "https://k3d.io/#installation"),
        ("kubectl", "1.25.0", "https://kubernetes.io/docs/tasks/tools/"),
        ("helm", "3.12.0", "https://helm.sh/docs/intro/install/"),
        ("node", "20.19.0", "https://nodejs.org/en/download"),
        ("npm", "9.0.0", "https://nodejs.org/en/download"),
    ):
        line = next(line for line in out.splitlines() if line.split()[1:2] == [name])
        assert line.startswith("MISSING"), line
        assert f"needs {minimum} or newer" in line
        assert hint in line
    assert "missing or too old: docker k3d kubectl helm node npm" in out


def test_check_deps_fails_on_a_tool_too_old_and_on_a_stopped_docker_engine(
    make: MakeRunner, tmp_path: Path
) -> None:
    tools = fake_tools(tmp_path / "bin", kubectl="v1.24.9", engine=False)
    result = make("check-deps", *(f"{k}={v}" for k, v in tools.items()))
    assert result.returncode != 0
    assert "TOO OLD  kubectl  1.24.9; needs 1.25.0 or newer" in result.stdout
    assert "ok       docker   27.3.1" in result.stdout
    assert "Docker engine does not answer" in result.stdout
    assert "missing or too old: docker-engine kubectl" in result.stdout


def test_check_deps_reads_the_real_kubectl_and_helm(make: MakeRunner, tmp_path: Path) -> None:
    kubectl, helm = binary("kubectl"), binary("helm")
    tools = fake_tools(tmp_path / "bin") | {"KUBECTL": str(kubectl), "HELM": str(helm)}
    result = make("check-deps", *(f"{k}={v}" for k, v in tools.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    # The versions the test bed pins (testbed/go/*/go.mod).
    kube_version = kubectl.parent.name.split("-")[1].lstrip("v")
    helm_version = helm.parent.name.split("-")[1].lstrip("v")
    assert f"ok       kubectl  {kube_version}" in result.stdout
    assert f"ok       helm     {helm_version}" in result.stdout


# --- Operating targets against the test bed's cluster ----------------------------------


@pytest.fixture
def cluster_vars(kube: KubeCluster, namespace: str) -> list[str]:
    """Make variables that aim the targets at the test bed's cluster and a fresh namespace."""
    return [
        f"KUBECTL={binary('kubectl')}",
        f"HELM={binary('helm')}",
        "KUBE_CONTEXT=modelserve",
        f"NAMESPACE={namespace}",
    ]


@pytest.fixture
def kubeconfig(kube: KubeCluster) -> dict[str, str]:
    return {"KUBECONFIG": str(kube.kubeconfig)}


@pytest.mark.kube
def test_status_shows_the_nodes_and_what_runs_in_the_namespace(
    make: MakeRunner,
    cluster_vars: list[str],
    kubeconfig: dict[str, str],
    kube: KubeCluster,
    kube_api: k8s.ApiClient,
    namespace: str,
) -> None:
    k8s.CoreV1Api(kube_api).create_namespaced_service(
        namespace,
        k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="modelserve-gateway"),
            spec=k8s.V1ServiceSpec(ports=[k8s.V1ServicePort(port=8200)]),
        ),
    )
    result = make("status", *cluster_vars, env=kubeconfig)
    assert result.returncode == 0, result.stdout + result.stderr
    for node in kube.nodes:
        assert node.name in result.stdout
    assert "service/modelserve-gateway" in result.stdout
    # helm list's header: the release table of the namespace (empty here).
    assert "NAME" in result.stdout
    assert "CHART" in result.stdout


@pytest.mark.kube
def test_logs_selects_the_release_and_one_component(
    make: MakeRunner, cluster_vars: list[str], kubeconfig: dict[str, str], namespace: str
) -> None:
    result = make("logs", *cluster_vars, env=kubeconfig)
    # Nothing installed: the real kubectl finds no pod of the release, and says so.
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"No resources found in {namespace} namespace." in result.stdout + result.stderr
    dry = make("-n", "logs", "COMPONENT=gateway", *cluster_vars)
    assert (
        "--selector app.kubernetes.io/instance=modelserve,app.kubernetes.io/component=gateway"
        in dry.stdout
    )


@pytest.mark.kube
def test_port_forward_asks_the_cluster_for_the_gateway_service(
    make: MakeRunner, cluster_vars: list[str], kubeconfig: dict[str, str]
) -> None:
    # Simulated nodes run no kubelet to forward to, but the real kubectl still resolves
    # the context, the namespace and the Service before it forwards anything.
    result = make("port-forward", *cluster_vars, env=kubeconfig, timeout=60)
    assert result.returncode != 0
    assert 'services "modelserve-gateway" not found' in result.stderr
    dry = make("-n", "port-forward", *cluster_vars)
    assert "service/modelserve-gateway 8200:8200" in dry.stdout


@pytest.mark.kube
def test_db_shell_runs_psql_as_the_user_and_database_of_the_secret(
    make: MakeRunner,
    cluster_vars: list[str],
    kubeconfig: dict[str, str],
    kube_api: k8s.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    missing = make("db-shell", *cluster_vars, env=kubeconfig, timeout=60)
    assert missing.returncode != 0
    assert 'secrets "modelserve-postgresql" not found' in missing.stderr

    k8s.CoreV1Api(kube_api).create_namespaced_secret(
        namespace,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="modelserve-postgresql"),
            string_data={"username": "ms_owner", "password": "s3cret-pw", "database": "msdb"},
        ),
    )
    # The real kubectl reads the Secret; `exec` is recorded instead of run, since no
    # container runs on a simulated node.
    execs = tmp_path / "exec-argv"
    kubectl = fake_tool(
        tmp_path / "bin",
        "kubectl",
        'for arg in "$@"; do\n'
        f'  if [ "$arg" = exec ]; then printf "%s\\n" "$@" > {execs}; exit 0; fi\n'
        "done\n"
        f'exec {binary("kubectl")} "$@"',
    )
    result = make("db-shell", *cluster_vars, f"KUBECTL={kubectl}", env=kubeconfig, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    argv = execs.read_text().splitlines()
    assert argv[argv.index("exec") :] == [
        "exec",
        "--namespace",
        namespace,
        "--stdin",
        "--tty",
        "statefulset/modelserve-postgresql",
        "--",
        "psql",
        "--username",
        "ms_owner",
        "--dbname",
        "msdb",
    ]
    assert argv[:2] == ["--context", "modelserve"]
    # The password stays in the cluster: psql uses the container's local socket.
    assert "s3cret-pw" not in result.stdout + result.stderr + execs.read_text()


@pytest.mark.kube
@pytest.mark.parametrize(
    ("step", "deployments"),
    [
        ("infra", set()),
        ("operator-deploy", {"operator"}),
        ("services-deploy", {"operator", "gateway", "contract", "download", "jobs"}),
    ],
)
def test_each_install_step_is_accepted_by_the_chart_and_the_api_server(
    step: str,
    deployments: set[str],
    make: MakeRunner,
    cluster_vars: list[str],
    kubeconfig: dict[str, str],
    crds: KubeCluster,
    root: Path,
    namespace: str,
) -> None:
    """The switches each step sets exist in the chart (its values schema), and what it
    renders from them is accepted by the real API server (a server-side dry run: nothing
    is installed, so no simulated pod has to run PostgreSQL)."""
    if not (root / "charts" / "modelserve" / "values.yaml").exists():
        pytest.skip("the chart is not written yet")
    # A release of its own: cluster-scoped names (ClusterRoles, the webhook) derive from
    # it, and the test bed's services hold `modelserve-*` ones in this cluster already.
    release = f"modelserve-{namespace}"
    result = make(
        step, *cluster_vars, f"RELEASE={release}", "HELM_FLAGS=--dry-run=server", env=kubeconfig
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STATUS: pending-install" in result.stdout
    manifest = result.stdout.split("MANIFEST:", 1)[1].split("\nNOTES:", 1)[0]
    objects = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(manifest) if o}
    # Every step keeps the chart's PostgreSQL and MinIO, and runs just its components.
    assert {("StatefulSet", f"{release}-postgresql"), ("StatefulSet", f"{release}-minio")} <= (
        objects
    )
    assert {name for kind, name in objects if kind == "Deployment"} == {
        f"{release}-{component}" for component in deployments
    }
