"""Decisions per second and decision latency of the contract service; with `--usage-batch`,
what recording usage in batches costs it.

    .venv/bin/python bench/contract_decisions.py [--users 1000] [--teams 50] [--seconds 10]
                                                 [--concurrency 32] [--workers 1]
    .venv/bin/python bench/contract_decisions.py --usage-batch [--batch 200] [--users 1000]
                                                 [--teams 50] [--seconds 10]

Starts PostgreSQL and `modelserve-contract` (as processes, `--workers` replicas on one
database), writes a contract for each of `--users` users and `--teams` teams through the
admin API, then sends `POST /decide` with the users' own tokens: 90% inference decisions
(a request counted and tokens reserved in the user's and team's windows: one database
call) and 10% serve decisions (allowlists, then the server ledger under an advisory
lock). Limits are generous, so nearly all are allowed: the work of an allowed decision
is the larger one. Prints latency one request at a time (p50/p99), then throughput and
latency with `--concurrency` requests in flight, and the CPU each process used.

`--usage-batch` does what the gateway's usage outbox does instead. Each user's contract
limits requests and tokens per minute and a monthly token budget, each team's a monthly
token budget; every user is in one team, so a request is charged to 4 limited counters.
With the gateway's service token it takes one lease of each counter per user (`POST
/leases`), then sends `POST /usage/batch`, one batch of `--batch` records at a time for
`--seconds`, each record settling its 4 leases (a hold of 1 request, 64 tokens), records
spread over the users in turn. Prints the time of a batch call per record (p50/p99 over
batches), records per second, the CPU the contract service and the bench's PostgreSQL
server used per record, then the time and this process's CPU per record of the service's
recording alone (`usage_records.record`: rows built, the batch as one jsonb parameter,
one SQL call and its commit; no HTTP, parsing or validation) for batches built the same
way.

On the 2-core development machine (2026-12-07), five runs of `.venv/bin/python
bench/contract_decisions.py --usage-batch --seconds 20` (1,000 users, 50 teams, batches
of 200) printed: through HTTP p50 0.26 to 0.34 ms a record, p99 0.85 to 0.98 ms; 2,600
to 3,100 records/s; 91 to 108 µs of the contract service's CPU and 203 to 247 µs of
PostgreSQL's a record; the recording alone p50 0.18 to 0.27 ms and 23 to 29 µs of CPU a
record. Five runs interleaved with them, of the service from before the batch was one
jsonb parameter (13 lists, written as array text by psycopg): 140 to 169 µs of the
service's CPU a record, 80 to 102 µs for the recording alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.contract import usage_records as recording
from modelserve.contract.decisions import ContractBook
from modelserve.contract.store import Store
from modelserve.contract.tables import Limits
from modelserve.testbed.measuring import cpu_seconds, percentile
from modelserve.testbed.platform import RunningService, start_service
from modelserve.testbed.postgres import PostgresServer, start_postgres
from modelserve.testbed.processes import ManagedProcess, descendants

SECRET = "bench-secret-of-at-least-thirty-two-bytes"


def service_cpu_seconds(process: ManagedProcess) -> float:
    """User + system CPU of the process and its waited-for children so far."""
    return cpu_seconds([process.pid] if process.pid else [], waited_children=True)


def postgres_cpu_seconds(server: PostgresServer) -> float:
    """The bench's PostgreSQL server: its process and all below it (the server forks one
    per connection), not other servers on the same machine."""
    root = server.process.pid
    return cpu_seconds(descendants([root])) if root is not None else 0.0


def setup_contracts(url: str, admin: str, users: list[str], teams: list[str]) -> None:
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        team_limits = {"max_servers": 100_000, "requests_per_minute": 10_000_000}
        for team in teams:
            client.put(f"/contracts/team/{team}", json=team_limits).raise_for_status()
        for user in users:
            limits = {
                "namespaces": ["default", "inference", f"ns-{user}"],
                "models": ["smollm2*", "llama-*", "qwen-*"],
                "max_replicas": rng.choice([2, 4, 8]),
                "max_servers": 100_000,
                "requests_per_minute": 10_000_000,
                "token_budget": 10_000_000_000,
                "budget_period": rng.choice(["day", "month"]),
            }
            client.put(f"/contracts/user/{user}", json=limits).raise_for_status()


def bodies(users: list[str], count: int, seed: int) -> list[tuple[int, dict[str, Any]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        who = rng.randrange(len(users))
        if rng.random() < 0.9:
            body = {"action": "infer", "resource": {"model": "smollm2-135m", "max_tokens": 256}}
        else:
            name = f"s-{uuid.uuid4().hex[:8]}"
            body = {
                "action": "serve",
                "resource": {
                    "namespace": "inference",
                    "name": name,
                    "model": "llama-8b",
                    "runtime": "vllm",
                    "replicas": 1,
                    "gpus": 1,
                },
            }
        out.append((who, body))
    return out


async def one(
    session: aiohttp.ClientSession, url: str, token: str, body: dict[str, Any]
) -> tuple[float, bool]:
    began = time.perf_counter()
    async with session.post(
        f"{url}/decide", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        answer = await response.json()
        assert response.status == 200, answer
    return time.perf_counter() - began, bool(answer["allowed"])


async def sequential(
    urls: list[str], tokens: list[str], work: list[tuple[int, dict[str, Any]]]
) -> list[float]:
    async with aiohttp.ClientSession() as session:
        latencies = []
        for i, (who, body) in enumerate(work):
            latency, _ = await one(session, urls[i % len(urls)], tokens[who], body)
            latencies.append(latency)
        return latencies


async def concurrent(
    urls: list[str],
    tokens: list[str],
    work: list[tuple[int, dict[str, Any]]],
    concurrency: int,
    seconds: float,
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    denied = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(index: int) -> None:
            nonlocal denied
            i = index
            while time.perf_counter() < deadline:
                who, body = work[i % len(work)]
                latency, allowed = await one(session, urls[i % len(urls)], tokens[who], body)
                latencies.append(latency)
                denied += not allowed
                i += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    return latencies, denied, elapsed


def report(title: str, latencies: list[float]) -> None:
    ms = [value * 1000 for value in latencies]
    print(
        f"  {title}: {len(ms)} decisions, p50 {percentile(ms, 50):.2f} ms,"
        f" p99 {percentile(ms, 99):.2f} ms, max {max(ms):.2f} ms",
        flush=True,
    )


# --- --usage-batch ---------------------------------------------------------------------------

# The counters a request is charged to, by whose they are: (user or team, metric).
USAGE_METRICS = (
    ("user", "requests/minute"),
    ("user", "tokens/minute"),
    ("user", "tokens/month"),
    ("team", "tokens/month"),
)
HOLDS = {"requests/minute": 1, "tokens/minute": 64, "tokens/month": 64}
# Far more than a run takes: every want is granted whole, every hold is held.
LEASE_AMOUNTS = {"requests/minute": 10**6, "tokens/minute": 10**9, "tokens/month": 10**9}


def setup_usage_contracts(url: str, admin: str, users: list[str], teams: list[str]) -> None:
    """Four limited counters per request: the user's requests and tokens per minute and
    token budget, the team's token budget (every window large enough for every lease)."""
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for team in teams:
            limits = {"token_budget": 10**15, "budget_period": "month"}
            client.put(f"/contracts/team/{team}", json=limits).raise_for_status()
        for user in users:
            limits = {
                "requests_per_minute": 10**9,
                "tokens_per_minute": 10**15,
                "token_budget": 10**15,
                "budget_period": "month",
            }
            client.put(f"/contracts/user/{user}", json=limits).raise_for_status()


def take_leases(
    url: str, service: str, principals: list[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    """One lease of each of the 4 counters per user, as a gateway takes them: per user,
    the `counters` its records carry (hold filled in)."""
    headers = {"Authorization": f"Bearer {service}"}
    out = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for principal in principals:
            scopes = {
                "user": f"user:{principal['subject']}",
                "team": f"team:{principal['teams'][0]}",
            }
            want = [
                {"scope": scopes[kind], "metric": metric, "amount": LEASE_AMOUNTS[metric]}
                for kind, metric in USAGE_METRICS
            ]
            body = {"holder": "bench-usage-batch", "principal": principal, "want": want}
            response = client.post("/leases", json=body)
            response.raise_for_status()
            grants = response.json()["leases"]
            granted = [g["granted"] for g in grants]
            assert granted == [w["amount"] for w in want], grants
            out.append(
                [
                    {
                        "scope": g["scope"],
                        "metric": g["metric"],
                        "lease": g["lease"],
                        "hold": HOLDS[g["metric"]],
                    }
                    for g in grants
                ]
            )
    return out


def usage_records(
    principals: list[dict[str, Any]], counters: list[list[dict[str, Any]]], start: int, size: int
) -> list[dict[str, Any]]:
    """`size` leased records, as the gateway's outbox sends them, of the users from
    `start` on, in turn: 64 tokens each, the holds of their leases."""
    records = []
    for i in range(start, start + size):
        who = i % len(principals)
        principal = principals[who]
        records.append(
            {
                "id": str(uuid.uuid4()),
                "principal": principal,
                "team": principal["teams"][0],
                "model": "smollm2-135m",
                "prompt_tokens": 20,
                "completion_tokens": 44,
                "counters": counters[who],
            }
        )
    return records


async def time_recording(
    database: str,
    principals: list[dict[str, Any]],
    counters: list[list[dict[str, Any]]],
    sent: int,
    size: int,
) -> tuple[list[float], float]:
    """35 batches through usage_records.record, the service's work for a batch once its
    body is parsed and validated (a row per record, the batch as one jsonb parameter, one
    SQL call and its commit), on one pooled connection; the first 5 (plans made for this
    session) not counted. Returns the time of each call and this process's CPU over them."""
    store = await Store.open(database, size=1, wait=5.0, migrate=False)
    book = ContractBook(Limits())  # leased records do not read it
    took = []
    cpu = 0.0
    try:
        for call in range(35):
            batch = usage_records(principals, counters, sent + call * size, size)
            records = [recording.UsageRecord.model_validate(r) for r in batch]
            start, cpu_start = time.perf_counter(), time.process_time()
            results = await recording.record(store, book, records)
            if call >= 5:
                took.append(time.perf_counter() - start)
                cpu += time.process_time() - cpu_start
            assert all(not r.reservation_found and r.duplicate is None for r in results)
    finally:
        await store.close()
    return took, cpu


def report_per_record(title: str, seconds: list[float], size: int) -> None:
    ms = [1000 * value / size for value in seconds]
    print(
        f"  {title}: {len(ms)} batches of {size}, p50 {percentile(ms, 50):.3f} ms a record,"
        f" p99 {percentile(ms, 99):.3f} ms a record",
        flush=True,
    )


def run_usage_batches(
    services: list[RunningService],
    postgres: PostgresServer,
    database: str,
    signer: TokenSigner,
    options: argparse.Namespace,
) -> None:
    users = [f"user-{i:05d}" for i in range(options.users)]
    teams = [f"team-{i:03d}" for i in range(options.teams)]
    principals = [
        {"subject": user, "teams": [teams[i % len(teams)]]} for i, user in enumerate(users)
    ]
    began = time.monotonic()
    setup_usage_contracts(services[0].url, signer.sign("root", roles=("admin",)), users, teams)
    service_token = signer.sign("service:gateway", roles=("service",))
    counters = take_leases(services[0].url, service_token, principals)
    print(
        f"contract_decisions --usage-batch: {options.users} user and {options.teams} team"
        f" contracts written and {4 * options.users} leases taken in"
        f" {time.monotonic() - began:.1f} s; {options.workers} service process(es) on one"
        f" PostgreSQL; 2 CPUs shared by all",
        flush=True,
    )
    size = options.batch
    urls = [service.url for service in services]
    headers = {"Authorization": f"Bearer {service_token}", "Content-Type": "application/json"}
    sent = 0

    def send(client: httpx.Client, count: int | None, seconds: float) -> list[float]:
        """Batches one at a time, each encoded before its clock starts; every record must
        come back fresh (counted once, nothing refused)."""
        nonlocal sent
        took: list[float] = []
        deadline = time.perf_counter() + seconds
        while len(took) != count and time.perf_counter() < deadline:
            records = usage_records(principals, counters, sent, size)
            body = json.dumps({"records": records}).encode()
            url = f"{urls[len(took) % len(urls)]}/usage/batch"
            start = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            took.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert all(r == {"recorded": True, "reservation_found": False} for r in results)
            sent += size
        return took

    with httpx.Client(timeout=60) as client:
        send(client, 5, 60)  # warm up
        cpu_before = (
            sum(service_cpu_seconds(s.process) for s in services),
            postgres_cpu_seconds(postgres),
        )
        began = time.perf_counter()
        took = send(client, None, options.seconds)
        elapsed = time.perf_counter() - began
        service_cpu = sum(service_cpu_seconds(s.process) for s in services) - cpu_before[0]
        pg_cpu = postgres_cpu_seconds(postgres) - cpu_before[1]
    records = len(took) * size
    report_per_record("POST /usage/batch, one batch at a time", took, size)
    print(
        f"  throughput: {records / elapsed:.0f} records/s over {elapsed:.1f} s;"
        f" CPU per record: contract service {1e6 * service_cpu / records:.0f} µs,"
        f" PostgreSQL {1e6 * pg_cpu / records:.0f} µs",
        flush=True,
    )

    # The recording alone: what the service does past HTTP, parsing and validation.
    took, cpu = asyncio.run(time_recording(database, principals, counters, sent, size))
    report_per_record("usage_records.record alone (no HTTP)", took, size)
    print(f"  its CPU (this process): {1e6 * cpu / (len(took) * size):.1f} µs a record", flush=True)


def run_decisions(
    services: list[RunningService],
    postgres: PostgresServer,
    signer: TokenSigner,
    options: argparse.Namespace,
) -> None:
    users = [f"user-{i:05d}" for i in range(options.users)]
    teams = [f"team-{i:03d}" for i in range(options.teams)]
    began = time.monotonic()
    setup_contracts(services[0].url, signer.sign("root", roles=("admin",)), users, teams)
    print(
        f"contract_decisions: {options.users} user and {options.teams} team contracts"
        f" written in {time.monotonic() - began:.1f} s; {options.workers} service"
        f" process(es) on one PostgreSQL; 2 CPUs shared by all",
        flush=True,
    )
    # Asked as the gateway asks (only services decide for real): its service token,
    # the user in `principal`.
    principals = [
        {"subject": user, "teams": [teams[i % len(teams)]] if i % 2 else []}
        for i, user in enumerate(users)
    ]
    tokens = [signer.sign("service:gateway", roles=("service",))] * len(users)

    def work(count: int, seed: int) -> list[tuple[int, dict[str, Any]]]:
        made = bodies(users, count, seed)
        return [(who, {**body, "principal": principals[who]}) for who, body in made]

    urls = [service.url for service in services]
    asyncio.run(sequential(urls, tokens, work(300, 1)))  # warm up
    report("one at a time", asyncio.run(sequential(urls, tokens, work(3000, 2))))
    cpu_before = [service_cpu_seconds(s.process) for s in services], postgres_cpu_seconds(postgres)
    client_before = time.process_time()
    latencies, denied, elapsed = asyncio.run(
        concurrent(urls, tokens, work(20000, 3), options.concurrency, options.seconds)
    )
    service_cpu = sum(service_cpu_seconds(s.process) for s in services) - sum(cpu_before[0])
    pg_cpu = postgres_cpu_seconds(postgres) - cpu_before[1]
    client_cpu = time.process_time() - client_before
    report(f"{options.concurrency} in flight", latencies)
    print(
        f"  throughput: {len(latencies) / elapsed:.0f} decisions/s over {elapsed:.1f} s"
        f" ({denied} denied)",
        flush=True,
    )
    print(
        f"  CPU, % of one core: contract service {100 * service_cpu / elapsed:.0f}%,"
        f" PostgreSQL {100 * pg_cpu / elapsed:.0f}%,"
        f" this load generator {100 * client_cpu / elapsed:.0f}%",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="service replicas")
    parser.add_argument(
        "--usage-batch", action="store_true", help="measure POST /usage/batch, not decisions"
    )
    parser.add_argument("--batch", type=int, default=200, help="records in a usage batch")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as tmp:
        folder = Path(tmp)
        postgres = start_postgres(log_folder=folder)
        services: list[RunningService] = []
        try:
            database = postgres.create_database("contract_bench")
            settings = {
                "CONTRACT_DATABASE_URL": database,
                "JWT_SECRET": SECRET,
                "CONTRACT_INVENTORY_SECONDS": "0",
                "CONTRACT_LOG_LEVEL": "warning",
                # Leases outlive the run: none is charged while records settle it.
                "CONTRACT_LEASE_SECONDS": "3600",
            }
            for _ in range(options.workers):
                services.append(start_service("contract", folder, settings))
            signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
            if options.usage_batch:
                run_usage_batches(services, postgres, database, signer, options)
            else:
                run_decisions(services, postgres, signer, options)
        finally:
            for service in services:
                service.stop()
            postgres.stop()


if __name__ == "__main__":
    main()
