"""Batch throughput beside a well-tuned concurrent client, and online latency while a
batch runs (issue 17, item 10).

    .venv/bin/python bench/batch_throughput.py [--items 1000] [--max-tokens 16]
        [--probes 20] [--rounds 2] [--threads 2] [--keep-logs DIR]

One upstream: llama.cpp's native server (`llama-server`, the platform's `llamacpp`
runtime) on SmolLM2-135M with `--parallel 8` slots, started with `--n-predict MAX
--ignore-eos` so that every request generates exactly `--max-tokens` tokens: the same
work whoever sends it. In front of it `modelserve-gateway` (`routed_gateway`: the test
bed's control plane, operator and an external ModelServe; no contract service) and the
jobs service (`modelserve-jobs`, its own PostgreSQL and the platform MinIO), with
JOBS_CONCURRENCY and JOBS_MAX_PER_MODEL equal to the server's slots and back-off on
(its defaults). Every request goes through the gateway, as its admin account.

Phases, one after the other, after a warm-up:

1. idle: `--probes` online chat requests one after the other; their p50 latency;
2. `--rounds` times, in turn (so that a busy moment of the machine falls on both):
   client: the `--items` chat items sent by an asyncio/httpx client with as many
   requests in flight as the server has slots (8): items per second; and batch: the
   same items as a batch through the OpenAI Batch API (`/v1/files`, `/v1/batches` with
   the `openai` client): items per second from its creation to its `completed` status
   (output file written). The medians are compared;
3. the floor of the back-off: `--probes` online requests while one other request runs
   beside them all the time (a job at its lowest concurrency, 1): their p50 latency;
4. batch with online traffic: the batch again, while `--probes` online requests go one
   after the other (0.5 s apart, to leave the back-off calm moments to climb back in):
   their p50 latency, and the batch's items per second from its creation to its end
   (online requests stop after `--probes`: with the back-off pausing job items while
   they run, the batch would otherwise wait for them).

Targets (the issue's): batch >= 0.9 x the client's items/s; online p50 during a batch
<= 1.5 x idle. Nothing asserts on them: the figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI

from modelserve.common.online_pressure import BACKGROUND, PRIORITY_HEADER
from modelserve.testbed.llama_server import start_llama_server
from modelserve.testbed.llm import MODEL_ALIAS
from modelserve.testbed.measuring import percentile, revision, scratch_folder
from modelserve.testbed.objectstores import start_minio
from modelserve.testbed.platform import start_service
from modelserve.testbed.postgres import start_postgres
from modelserve.testbed.processes import free_port
from modelserve.testbed.routed import SECRET, routed_gateway

ROOT = Path(__file__).resolve().parents[1]
SLOTS = 8
ADMIN_PASSWORD = "bench-admin-password"  # routed_gateway's
BUCKET = "batch-bench"


def chat_body(index: int, max_tokens: int) -> dict[str, Any]:
    return {
        "model": MODEL_ALIAS,
        "messages": [{"role": "user", "content": f"Write a line about the number {index}."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


async def online_request(http: httpx.AsyncClient, max_tokens: int) -> float:
    started = time.perf_counter()
    answer = await http.post("/v1/chat/completions", json=chat_body(-1, max_tokens))
    answer.raise_for_status()
    return time.perf_counter() - started


async def idle_latency(http: httpx.AsyncClient, probes: int, max_tokens: int) -> list[float]:
    return [await online_request(http, max_tokens) for _ in range(probes)]


async def beside_one_stream(http: httpx.AsyncClient, probes: int, max_tokens: int) -> list[float]:
    """Online latencies while one background request after another runs beside them."""
    done = asyncio.Event()

    async def stream() -> None:
        headers = {PRIORITY_HEADER: BACKGROUND}
        while not done.is_set():
            body = chat_body(-2, max_tokens)
            answer = await http.post("/v1/chat/completions", json=body, headers=headers)
            answer.raise_for_status()

    streaming = asyncio.create_task(stream())
    try:
        await asyncio.sleep(0.5)
        return await idle_latency(http, probes, max_tokens)
    finally:
        done.set()
        await streaming


async def concurrent_client(http: httpx.AsyncClient, items: int, max_tokens: int) -> float:
    """Items per second with SLOTS requests in flight, as a tuned client sends them."""
    queue = list(range(items))

    async def lane() -> None:
        while queue:
            index = queue.pop()
            answer = await http.post("/v1/chat/completions", json=chat_body(index, max_tokens))
            answer.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(SLOTS)))
    return items / (time.perf_counter() - started)


async def run_batch(client: AsyncOpenAI, items: int, max_tokens: int) -> tuple[float, Any]:
    """Items per second of one batch, from its creation to `completed`; and the batch."""
    lines = [
        json.dumps(
            {
                "custom_id": f"item-{index}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat_body(index, max_tokens),
            }
        )
        for index in range(items)
    ]
    uploaded = await client.files.create(
        file=("items.jsonl", ("\n".join(lines) + "\n").encode()), purpose="batch"
    )
    started = time.perf_counter()
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        await asyncio.sleep(0.2)
        batch = await client.batches.retrieve(batch.id)
    elapsed = time.perf_counter() - started
    counts = batch.request_counts
    if batch.status != "completed" or counts is None or counts.failed:
        raise RuntimeError(f"the batch ended {batch.status}: {counts}")
    return items / elapsed, batch


async def batch_with_online(
    client: AsyncOpenAI, http: httpx.AsyncClient, items: int, max_tokens: int, probes: int
) -> tuple[float, list[float]]:
    """The batch's rate, and the latencies of `probes` online requests sent (one after the
    other, 0.5 s apart) while it runs. With the back-off pausing job items while online
    requests run, the batch waits for the probes: they stop after `probes`, so that it
    ends; its rate here is not the throughput figure (phase 2 is)."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set() and len(latencies) < probes:
            latencies.append(await online_request(http, max_tokens))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)

    prober = asyncio.create_task(probe())
    try:
        rate, _ = await run_batch(client, items, max_tokens)
    finally:
        done.set()
        await prober
    return rate, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    # llama-server's threads: on a small machine, 1 leaves a core to the platform's own
    # processes (gateway, jobs service, PostgreSQL), which a GPU server would not share.
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-logs", type=Path)
    args = parser.parse_args()
    print(f"batch_throughput: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(f"  load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  code: {revision(ROOT)}")
    print(
        f"  {args.items} items of {args.max_tokens} tokens; llama-server --parallel {SLOTS}"
        f" --threads {args.threads}"
    )
    with (
        scratch_folder("modelserve-batch-bench-", args.keep_logs) as folder,
        contextlib.ExitStack() as stack,
    ):
        options = [
            "--n-predict",
            str(args.max_tokens),
            "--ignore-eos",
            "--threads",
            str(args.threads),
        ]
        llama = start_llama_server(folder, parallel=SLOTS, options=options)
        stack.callback(llama.stop)
        jobs_port = free_port()
        gateway = stack.enter_context(
            routed_gateway(
                folder,
                llama.url,
                MODEL_ALIAS,
                {"GATEWAY_JOBS_URL": f"http://127.0.0.1:{jobs_port}"},
            )
        )
        postgres = start_postgres(log_folder=folder / "logs")
        stack.callback(postgres.stop)
        store = start_minio("platform", folder / "minio", bucket=BUCKET)
        stack.callback(store.stop)
        jobs = start_service(
            "jobs",
            folder / "logs",
            {
                "JWT_SECRET": SECRET,
                "JWT_GATEWAY_URL": gateway.url,
                "JOBS_DATABASE_URL": postgres.create_database("jobs_bench"),
                "JOBS_GATEWAY_URL": gateway.url,
                "JOBS_STORE_ENDPOINT": store.endpoint,
                "JOBS_STORE_ACCESS_KEY": store.access_key,
                "JOBS_STORE_SECRET_KEY": store.secret_key,
                "JOBS_STORE_BUCKET": BUCKET,
                "JOBS_CONCURRENCY": str(SLOTS),
                "JOBS_MAX_PER_MODEL": str(SLOTS),
                "JOBS_LOG_LEVEL": "warning",
            },
            port=jobs_port,
        )
        stack.callback(jobs.stop)
        signed = httpx.post(
            f"{gateway.url}/auth/token",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=30,
        )
        signed.raise_for_status()
        token = signed.json()["access_token"]

        async def run() -> dict[str, Any]:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx.AsyncClient(
                    base_url=gateway.url, headers=headers, timeout=600, limits=limits
                ) as http,
                AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=token, timeout=600) as client,
            ):
                warm = min(args.items, 2 * SLOTS)
                await concurrent_client(http, warm, args.max_tokens)
                await run_batch(client, warm, args.max_tokens)
                print("  warmed up; measuring", flush=True)
                idle = await idle_latency(http, args.probes, args.max_tokens)
                clients, batches = [], []
                for round_ in range(1, args.rounds + 1):
                    clients.append(await concurrent_client(http, args.items, args.max_tokens))
                    batches.append((await run_batch(client, args.items, args.max_tokens))[0])
                    print(
                        f"  round {round_}: client {clients[-1]:.2f} items/s, "
                        f"batch {batches[-1]:.2f} items/s",
                        flush=True,
                    )
                beside = await beside_one_stream(http, args.probes, args.max_tokens)
                loaded_rate, during = await batch_with_online(
                    client, http, args.items, args.max_tokens, args.probes
                )
                return {
                    "idle": idle,
                    "client": statistics.median(clients),
                    "batch": statistics.median(batches),
                    "loaded": loaded_rate,
                    "beside": beside,
                    "during": during,
                }

        figures = asyncio.run(run())
    report(figures)


def report(figures: dict[str, Any]) -> None:
    idle, during = figures["idle"], figures["during"]
    idle_p50, during_p50 = statistics.median(idle), statistics.median(during)
    ratio = figures["batch"] / figures["client"]
    slowdown = during_p50 / idle_p50
    print()
    print(f"  concurrent client ({SLOTS} in flight): {figures['client']:8.2f} items/s (median)")
    print(
        f"  batch (Batch API, jobs engine):      {figures['batch']:8.2f} items/s (median)"
        f"  = {ratio:.2f} x the client (target >= 0.90)"
    )
    print(
        f"  batch with online requests:          {figures['loaded']:8.2f} items/s"
        f"  = {figures['loaded'] / figures['client']:.2f} x the client"
    )
    print(
        f"  online latency idle:         p50 {idle_p50:6.3f} s  p90 {percentile(idle, 90):6.3f} s"
        f"  ({len(idle)} requests)"
    )
    beside = figures["beside"]
    print(
        f"  online latency beside 1 item:  p50 {statistics.median(beside):6.3f} s  p90 "
        f"{percentile(beside, 90):6.3f} s  ({len(beside)} requests)"
        f"  = {statistics.median(beside) / idle_p50:.2f} x idle (the back-off's floor)"
    )
    print(
        f"  online latency during batch: p50 {during_p50:6.3f} s  p90 "
        f"{percentile(during, 90):6.3f} s  ({len(during)} requests)"
        f"  = {slowdown:.2f} x idle (target <= 1.50)"
    )


if __name__ == "__main__":
    main()
