"""The whole test bed at once, as `make dev` runs it."""

from __future__ import annotations

import secrets
import shlex
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from modelserve.common.tokens import ADMIN, TokenSettings, TokenSigner
from modelserve.testbed.gobuild import binary
from modelserve.testbed.kube import KubeCluster, start_cluster
from modelserve.testbed.llm import MODEL_ALIAS, LlmServer, start_llm
from modelserve.testbed.objectstores import (
    PLATFORM_BUCKET,
    UPSTREAM_BUCKET,
    MinioServer,
    start_minio,
)
from modelserve.testbed.platform import (
    RunningContract,
    RunningOperator,
    RunningService,
    build_external_server,
    gateway_kubeconfig,
    install_crds,
    operator_kubeconfig,
    serve_external,
    start_contract,
    start_operator,
    start_service,
)
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import PostgresServer, start_postgres
from modelserve.testbed.processes import free_port, port_open
from modelserve.testbed.seeding import SMOLLM2_MODEL_UUID, SMOLLM2_NAME, seed_smollm2
from modelserve.testbed.serving import ServedModel, download_model, serve
from modelserve.testbed.traefik import GATEWAY_SERVICE, RunningTraefik, start_traefik

# What the summary tells a developer to run, after `source .dev/env`.
FIRST_DOWNLOAD = (
    'curl -X POST "$DOWNLOAD_URL/download/$SMOLLM2_MODEL_UUID"'
    ' -H "Authorization: Bearer $MODELSERVE_TOKEN"'
)
# The web UI's build (web/dist of this checkout).
WEB_BUILD = Path(__file__).resolve().parents[3] / "web" / "dist"
# The gateway's first admin; their password is new with each `up` ($GATEWAY_ADMIN_PASSWORD).
GATEWAY_ADMIN = "admin"
GATEWAY_SIGN_IN = (
    "TOKEN=$(curl -s -X POST \"$GATEWAY_URL/auth/token\" -H 'Content-Type: application/json'"
    ' -d "{\\"username\\": \\"admin\\", \\"password\\": \\"$GATEWAY_ADMIN_PASSWORD\\"}"'
    " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
)
GATEWAY_CHAT = (
    'curl "$GATEWAY_URL/v1/chat/completions" -H "Authorization: Bearer $TOKEN"'
    " -H 'Content-Type: application/json'"
    f""" -d '{{"model": "{MODEL_ALIAS}", "max_tokens": 64,"""
    """ "messages": [{"role": "user", "content": "Hi"}]}'"""
)
# The jobs service behind the gateway's door: the caller's jobs and their counts.
GATEWAY_JOBS = 'curl "$GATEWAY_URL/jobs/stats" -H "Authorization: Bearer $TOKEN"'
# The same server through Traefik's per-server route, with the seeds' body (no `model`).
ROUTE_CHAT = (
    'curl "$TRAEFIK_URL/$SMOLLM2_SERVER_ID/v1/chat/completions" -H "Authorization: Bearer $TOKEN"'
    " -H 'Content-Type: application/json'"
    """ -d '{"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.7,"""
    """ "max_tokens": 64}'"""
)
# What `make dev` serves with POST /serve: the downloaded SmolLM2 on llama.cpp, CPU node.
SMOLLM2_SERVE_REQUEST = {
    "model_uuid": SMOLLM2_MODEL_UUID,
    "runtime": "llamacpp",
    "served_name": MODEL_ALIAS,
    "runtime_params": "--ctx-size 2048 --threads 2 --parallel 4",
}
# How the operator's per-server routes name the gateway: a service of Traefik's file provider.
GATEWAY_TRAEFIK_SERVICE = f"{GATEWAY_SERVICE}@file"
# The `external` ModelServe that puts the llama-cpp-python server behind the gateway too:
# an example of a server that runs outside the cluster.
SMOLLM2_SERVER = "smollm2-external"
SMOLLM2_SERVER_NAMESPACE = "default"
SMOLLM2_EXTERNAL_NAME = f"{MODEL_ALIAS}-external"
# The secret is new with each `up`, so the token dies with the stack whatever its expiry;
# and whoever can read it in .dev/env can read $JWT_SECRET beside it.
ADMIN_TOKEN_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True)
class Ports:
    """Loopback ports; the defaults are the well-known ones of each component (0: any free)."""

    apiserver: int = 6443
    postgres: int = 5432
    platform_minio: int = 9000
    platform_console: int = 9001
    upstream_minio: int = 9100
    upstream_console: int = 9101
    llm: int = 8100
    gateway: int = 8200
    traefik: int = 8080
    contract: int = 8201
    contract_webhook: int = 8443
    download: int = 8202
    jobs: int = 8203

    @classmethod
    def any(cls) -> Ports:
        return cls(**{name: 0 for name in vars(cls())})

    def busy(self) -> list[str]:
        return [f"{name}={port}" for name, port in vars(self).items() if port and port_open(port)]


@dataclass
class Stack:
    folder: Path
    kube: KubeCluster
    postgres: PostgresServer
    database_url: str
    upstream: MinioServer
    platform: MinioServer
    llm: LlmServer
    operator: RunningOperator
    contract: RunningContract
    download: RunningService
    download_database_url: str
    jobs: RunningService
    jobs_database_url: str
    gateway: RunningService
    gateway_database_url: str
    gateway_admin_password: str
    jwt_secret: str
    admin_token: str
    traefik: RunningTraefik
    served: ServedModel

    def environment(self) -> dict[str, str]:
        """What the platform's services read to find the test bed's components."""
        return {
            "KUBECONFIG": str(self.kube.kubeconfig),
            "DATABASE_URL": self.database_url,
            "MINIO_ENDPOINT": self.platform.endpoint,
            "MINIO_ACCESS_KEY": self.platform.access_key,
            "MINIO_SECRET_KEY": self.platform.secret_key,
            "MINIO_BUCKET": self.platform.bucket,
            "MINIO_SECURE": "false",
            "UPSTREAM_MINIO_ENDPOINT": self.upstream.endpoint,
            "UPSTREAM_MINIO_ACCESS_KEY": self.upstream.access_key,
            "UPSTREAM_MINIO_SECRET_KEY": self.upstream.secret_key,
            "UPSTREAM_MINIO_BUCKET": self.upstream.bucket,
            "MODEL_SERVER_URL": self.llm.url,
            "MODEL_SERVER_MODEL": self.llm.alias,
            # A GGUF file on this machine: the checkpoint docs/registry.md registers.
            "SMOLLM2_GGUF": str(self.llm.model_path),
            "HELM": str(binary("helm")),
            "KUBECTL": str(binary("kubectl")),
            "JWT_SECRET": self.jwt_secret,
            "CONTRACT_URL": self.contract.service.url,
            "DOWNLOAD_URL": self.download.url,
            "DOWNLOAD_DATABASE_URL": self.download_database_url,
            "JOBS_URL": self.jobs.url,
            "JOBS_DATABASE_URL": self.jobs_database_url,
            "GATEWAY_URL": self.gateway.url,
            "GATEWAY_DATABASE_URL": self.gateway_database_url,
            "GATEWAY_ADMIN_PASSWORD": self.gateway_admin_password,
            # What `modelserve-download get|status|list` reads.
            "MODELSERVE_DOWNLOAD_URL": self.download.url,
            "MODELSERVE_TOKEN": self.admin_token,
            "SMOLLM2_MODEL_UUID": SMOLLM2_MODEL_UUID,
            "TRAEFIK_URL": self.traefik.url,
            "SMOLLM2_SERVER_ID": self.served.server_id,
        }

    def summary(self) -> str:
        env_file = self.folder / "env"
        lines = [
            "ModelServe test bed is up.",
            f"  Kubernetes   {self.kube.server}  (kubeconfig {self.kube.kubeconfig})",
            f"               nodes: {', '.join(node.name for node in self.kube.nodes)}",
            f"  PostgreSQL   {self.database_url}",
            f"  MinIO        platform {self.platform.url} bucket {self.platform.bucket} "
            f"(access key {self.platform.access_key}, secret {self.platform.secret_key}, "
            f"console http://127.0.0.1:{self.platform.console_port})",
            f"               upstream {self.upstream.url} bucket {self.upstream.bucket} "
            f"(access key {self.upstream.access_key}, secret {self.upstream.secret_key})",
            f"  Model server {self.llm.url}  model {self.llm.alias}",
            f"  Operator     modelserve-operator (health http://127.0.0.1:"
            f"{self.operator.health_port}/healthz); try: kubectl apply -f docs/examples/",
            f"  Contract     {self.contract.service.url} (webhook {self.contract.webhook_url},"
            " registered; tokens signed with $JWT_SECRET)",
            f"  Download     {self.download.url} (upstream holds {SMOLLM2_NAME} under "
            f"{self.upstream.bucket}/{SMOLLM2_MODEL_UUID}/)",
            f"  Jobs         {self.jobs.url} (the job engine, one replica; users reach it "
            "through the gateway: /jobs, /v1/files, /v1/batches, /eval/jobs, /data_gen/jobs, "
            "/generate)",
            f"  Gateway      {self.gateway.url} (OpenAI API under /v1; sign in as "
            f"{GATEWAY_ADMIN} with $GATEWAY_ADMIN_PASSWORD)",
            f"  Traefik      {self.traefik.url} (/{{server-id}}/v1/... through the gateway)",
            f"  Served       {self.served.served_name}: ModelServe {self.served.namespace}/"
            f"{self.served.name} (llamacpp, downloaded and served with POST /serve; server id "
            f"$SMOLLM2_SERVER_ID); {SMOLLM2_EXTERNAL_NAME}: ModelServe "
            f"{SMOLLM2_SERVER_NAMESPACE}/{SMOLLM2_SERVER} (external, the model server above)",
            "  Token        $MODELSERVE_TOKEN: an admin token, signed with $JWT_SECRET",
            f"  Logs         {self.folder / 'logs'}",
            f"Use it from another shell:  source {env_file} && kubectl get nodes",
            f"SmolLM2 was downloaded (asking again answers 200 with its job):  {FIRST_DOWNLOAD}",
            '                   and curl "$DOWNLOAD_URL/status/$SMOLLM2_MODEL_UUID"'
            ' -H "Authorization: Bearer $MODELSERVE_TOKEN"',
            "A chat through the gateway, as its first admin:",
            f"  {GATEWAY_SIGN_IN}",
            f"  {GATEWAY_CHAT}",
            f"  {GATEWAY_JOBS}",
            "The same server through Traefik's route, with the seeds' body:",
            f"  {ROUTE_CHAT}",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)

    def write_env(self) -> Path:
        env_file = self.folder / "env"
        environment = self.environment()
        exports = [f"export {key}={shlex.quote(value)}" for key, value in environment.items()]
        kubectl_dir = Path(environment["KUBECTL"]).parent
        exports.append(f'export PATH={shlex.quote(str(kubectl_dir))}:"$PATH"')
        env_file.write_text("\n".join(exports) + "\n")
        return env_file


def wait_until_listed(gateway: RunningService, password: str, model: str) -> str:
    """Sign in as the gateway's first admin and wait until GET /v1/models lists `model`;
    the admin's token."""
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        signed_in = http.post("/auth/token", json={"username": GATEWAY_ADMIN, "password": password})
        signed_in.raise_for_status()
        token = signed_in.json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"

        def listed() -> bool:
            models = http.get("/v1/models").json()["data"]
            return any(entry["id"] == model for entry in models)

        wait_for(listed, timeout=30, what=f"the gateway to list {model}")
    return str(token)


def start_stack(folder: Path, ports: Ports, resources: ExitStack) -> Stack:
    """Start every component; each one's stop is pushed on `resources` as it comes up."""
    busy = ports.busy()
    if busy:
        raise RuntimeError(f"ports already in use: {', '.join(busy)}; stop what holds them")
    kube = start_cluster(folder / "kube", apiserver_port=ports.apiserver)
    resources.callback(kube.stop)
    postgres = start_postgres(port=ports.postgres, log_folder=folder / "logs")
    resources.callback(postgres.stop)
    database_url = postgres.create_database("modelserve")
    upstream = start_minio(
        "upstream",
        folder,
        bucket=UPSTREAM_BUCKET,
        port=ports.upstream_minio,
        console_port=ports.upstream_console,
    )
    resources.callback(upstream.stop)
    platform = start_minio(
        "platform",
        folder,
        bucket=PLATFORM_BUCKET,
        port=ports.platform_minio,
        console_port=ports.platform_console,
    )
    resources.callback(platform.stop)
    llm = start_llm(folder, port=ports.llm, alias=SMOLLM2_EXTERNAL_NAME)
    resources.callback(llm.stop)
    install_crds(kube)
    operator = start_operator(
        operator_kubeconfig(kube),
        folder / "logs",
        {
            # Per-server routes lead to the gateway, which Traefik knows from its file.
            "OPERATOR_ROUTE_SERVICE": GATEWAY_TRAEFIK_SERVICE,
            # Pods reach the platform MinIO through the pod network's forwarder.
            "OPERATOR_MODEL_STORE_ENDPOINT": kube.expose_to_pods(platform.port),
            "OPERATOR_MODEL_STORE_ACCESS_KEY": platform.access_key,
            "OPERATOR_MODEL_STORE_SECRET_KEY": platform.secret_key,
        },
    )
    resources.callback(operator.stop)
    jwt_secret = secrets.token_urlsafe(36)
    # The contract, download and jobs services ask the gateway about API keys and
    # revocations (and the jobs service sends its items there); its port is chosen now, as
    # it starts after them.
    gateway_port = ports.gateway or free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    contract = start_contract(
        kube,
        folder,
        database_url,
        {
            "JWT_SECRET": jwt_secret,
            "JWT_GATEWAY_URL": gateway_url,
            # The cluster's admin (kubectl here) is a platform admin: not limited.
            "CONTRACT_ADMIN_GROUPS": "modelserve:admins,system:masters",
        },
        port=ports.contract or None,
        webhook_port=ports.contract_webhook or None,
    )
    resources.callback(contract.stop, kube)
    seed_smollm2(upstream, llm.model_path)
    # A database of its own: its `models` table is no business of the other services.
    download_database_url = postgres.create_database("modelserve_download")
    download = start_service(
        "download",
        folder / "logs",
        {
            "JWT_SECRET": jwt_secret,
            "JWT_GATEWAY_URL": gateway_url,
            "DOWNLOAD_DATABASE_URL": download_database_url,
            "DOWNLOAD_UPSTREAM_ENDPOINT": upstream.endpoint,
            "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream.access_key,
            "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream.secret_key,
            "DOWNLOAD_UPSTREAM_BUCKETS": upstream.bucket,
            "DOWNLOAD_PLATFORM_ENDPOINT": platform.endpoint,
            "DOWNLOAD_PLATFORM_ACCESS_KEY": platform.access_key,
            "DOWNLOAD_PLATFORM_SECRET_KEY": platform.secret_key,
            "DOWNLOAD_PLATFORM_BUCKET": platform.bucket,
            "DOWNLOAD_CONTRACT_URL": contract.service.url,
        },
        port=ports.download or None,
    )
    resources.callback(download.stop)
    # The jobs service, with a database of its own (its tables are no business of the
    # others): its items go to the gateway as their owners (POST /auth/delegate with a
    # service token signed with $JWT_SECRET), its files and outputs to the platform bucket.
    jobs_database_url = postgres.create_database("modelserve_jobs")
    jobs = start_service(
        "jobs",
        folder / "logs",
        {
            "JWT_SECRET": jwt_secret,
            "JWT_GATEWAY_URL": gateway_url,
            "JOBS_DATABASE_URL": jobs_database_url,
            "JOBS_GATEWAY_URL": gateway_url,
            "JOBS_WORKER_ID": "jobs-dev-0",
            "JOBS_STORE_ENDPOINT": platform.endpoint,
            "JOBS_STORE_ACCESS_KEY": platform.access_key,
            "JOBS_STORE_SECRET_KEY": platform.secret_key,
            "JOBS_STORE_BUCKET": platform.bucket,
        },
        port=ports.jobs or None,
    )
    resources.callback(jobs.stop)
    # As the cluster's admin, before the gateway starts: its first list of routes has the
    # server Ready.
    smollm2 = build_external_server(
        SMOLLM2_SERVER,
        SMOLLM2_SERVER_NAMESPACE,
        owner=GATEWAY_ADMIN,
        served_name=llm.alias,
        url=llm.url,
    )
    serve_external(kube, smollm2)
    gateway_database_url = postgres.create_database("modelserve_gateway")
    gateway_admin_password = secrets.token_urlsafe(18)
    traefik_port = ports.traefik or free_port()
    gateway = start_service(
        "gateway",
        folder / "logs",
        {
            "JWT_SECRET": jwt_secret,
            "GATEWAY_DATABASE_URL": gateway_database_url,
            "GATEWAY_ADMIN_USERNAME": GATEWAY_ADMIN,
            "GATEWAY_ADMIN_PASSWORD": gateway_admin_password,
            "GATEWAY_CONTRACT_URL": contract.service.url,
            "GATEWAY_DOWNLOAD_URL": download.url,
            "GATEWAY_JOBS_URL": jobs.url,
            # Its own service account, which the contract's webhook lets act for users
            # (CONTRACT_DELEGATING_USERS).
            "GATEWAY_KUBECONFIG": str(gateway_kubeconfig(kube)),
            # What GET /status shows as each server's endpoint.
            "GATEWAY_INGRESS_URL": f"http://127.0.0.1:{traefik_port}",
            # The web UI under /ui, when it is built (`make dev` builds it: `make ui`).
            **({"GATEWAY_UI_DIR": str(WEB_BUILD)} if (WEB_BUILD / "index.html").is_file() else {}),
        },
        port=gateway_port,
    )
    resources.callback(gateway.stop)
    traefik = start_traefik(folder / "traefik", kube, port=traefik_port, gateway_url=gateway.url)
    resources.callback(traefik.stop)
    gateway_token = wait_until_listed(gateway, gateway_admin_password, SMOLLM2_EXTERNAL_NAME)
    signer = TokenSigner(TokenSettings(secret=SecretStr(jwt_secret)))
    admin_token = signer.sign("developer", roles=(ADMIN,), expires_in=ADMIN_TOKEN_SECONDS)
    # The core loop: download, serve on llama.cpp (its pods really run), chat.
    print("testbed: downloading SmolLM2 and serving it on llama.cpp", flush=True)
    download_model(download.url, admin_token, SMOLLM2_MODEL_UUID)
    served = serve(gateway.url, gateway_token, SMOLLM2_SERVE_REQUEST)
    return Stack(
        folder,
        kube,
        postgres,
        database_url,
        upstream,
        platform,
        llm,
        operator,
        contract,
        download,
        download_database_url,
        jobs,
        jobs_database_url,
        gateway,
        gateway_database_url,
        gateway_admin_password,
        jwt_secret,
        admin_token,
        traefik,
        served,
    )
