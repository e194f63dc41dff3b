"""Decisions per second and decision latency of the contract service.

    .venv/bin/python bench/contract_decisions.py [--users 1000] [--teams 50] [--seconds 10]
                                                 [--concurrency 32] [--workers 1]

Starts PostgreSQL and `modelserve-contract` (as processes, `--workers` replicas on one
database), writes a contract for each of `--users` users and `--teams` teams through the
admin API, then sends `POST /decide` with the users' own tokens: 90% inference decisions
(a request counted and tokens reserved in the user's and team's windows: one database
call) and 10% serve decisions (allowlists, then the server ledger under an advisory
lock). Limits are generous, so nearly all are allowed: the work of an allowed decision
is the larger one. Prints latency one request at a time (p50/p99), then throughput and
latency with `--concurrency` requests in flight, and the CPU each process used.
"""

from __future__ import annotations

import argparse
import asyncio
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
from modelserve.testbed.measuring import CLOCK_TICKS, cpu_seconds, percentile
from modelserve.testbed.platform import RunningService, start_service
from modelserve.testbed.postgres import start_postgres
from modelserve.testbed.processes import ManagedProcess

SECRET = "bench-secret-of-at-least-thirty-two-bytes"


def service_cpu_seconds(process: ManagedProcess) -> float:
    """User + system CPU of the process and its waited-for children so far."""
    return cpu_seconds([process.pid] if process.pid else [], waited_children=True)


def postgres_cpu_seconds() -> float:
    """All postgres processes (the server forks one per connection)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:13])
    return total / CLOCK_TICKS


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="service replicas")
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
            }
            for _ in range(options.workers):
                services.append(start_service("contract", folder, settings))
            signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
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
            cpu_before = [service_cpu_seconds(s.process) for s in services], postgres_cpu_seconds()
            client_before = time.process_time()
            latencies, denied, elapsed = asyncio.run(
                concurrent(urls, tokens, work(20000, 3), options.concurrency, options.seconds)
            )
            service_cpu = sum(service_cpu_seconds(s.process) for s in services) - sum(cpu_before[0])
            pg_cpu = postgres_cpu_seconds() - cpu_before[1]
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
        finally:
            for service in services:
                service.stop()
            postgres.stop()


if __name__ == "__main__":
    main()
