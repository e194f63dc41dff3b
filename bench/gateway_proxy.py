"""What the gateway adds to an OpenAI request, beside direct access and LiteLLM's proxy.

    .venv/bin/python bench/gateway_proxy.py [--requests 2000] [--seconds 10]
        [--concurrency 64] [--streams 8] [--chunks 256] [--skip-litellm]

One zero-latency upstream (`modelserve.testbed.openai_stub`: canned answers, or
`--chunks` SSE events when streamed) is reached three ways, one after the other:

- direct: the stub itself;
- gateway: `modelserve-gateway` (one process, one worker), routing the model `stub` to
  an `external` ModelServe that the operator reports Ready, on the test bed's real
  control plane and PostgreSQL, with a JWT; no contract service (nothing is limited);
- litellm: LiteLLM's proxy (`litellm[proxy]`, PyPI, in a virtual environment of its own
  under ~/.cache/modelserve/venvs, made on first use) with one worker and a config
  naming the same upstream.

For each: latency of `--requests` sequential non-streamed chat completions on one
keep-alive connection (p50/p99; the gateway's "added" latency is its figure minus
direct's); requests per second with `hey` (built from its Go module) at `--concurrency`
for `--seconds`; streamed tokens per second: `--streams` concurrent streams of `--chunks`
events each, repeated for `--seconds`, every event counted as it arrives. The CPU each
server used in the throughput phases is read from /proc. Targets (the issue's): added
p50 <= 1 ms, streaming tokens/s >= 95% of direct, RPS >= 2 x LiteLLM's. Nothing asserts
on them: the figures are printed, with the machine and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from modelserve.testbed.gobuild import binary
from modelserve.testbed.measuring import cpu_seconds, percentile, revision, scratch_folder
from modelserve.testbed.processes import ManagedProcess, free_port, http_ok
from modelserve.testbed.routed import routed_gateway
from modelserve.testbed.venvs import tool_venv

ROOT = Path(__file__).resolve().parents[1]
LITELLM_VERSION = "1.106.2"
SECRET = "bench-secret-of-at-least-thirty-two-bytes"
LITELLM_KEY = "sk-bench-master-key-0123456789abcdef"
MODEL = "stub"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    prefix: str  # the path before /chat/completions
    headers: dict[str, str]
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"


@dataclass
class Figures:
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    rps: float = math.nan
    errors: int = 0
    tokens_per_second: float = math.nan
    cpu_seconds: float = math.nan


def process_cpu_seconds(process: ManagedProcess) -> float:
    """User + system CPU of the process (and its waited-for children) so far."""
    if not process.pid:
        return math.nan
    return cpu_seconds([process.pid], waited_children=True)


# --- the three ways in ------------------------------------------------------------------


def start_stub(folder: Path, chunks: int) -> tuple[ManagedProcess, int]:
    port = free_port()
    process = ManagedProcess(
        "openai-stub",
        [
            sys.executable,
            "-m",
            "modelserve.testbed.openai_stub",
            "--port",
            str(port),
            "--chunks",
            str(chunks),
        ],
        folder / "stub.log",
    )
    process.start()
    process.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), 30, "serving")
    return process, port


def litellm_venv() -> Path:
    """LiteLLM's proxy in a virtual environment of its own, made once per version."""
    return tool_venv("litellm", LITELLM_VERSION, [f"litellm[proxy]=={LITELLM_VERSION}"])


def start_litellm(folder: Path, upstream: str) -> tuple[ManagedProcess, int]:
    venv = litellm_venv()
    config = folder / "litellm.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": upstream,
                            "api_key": "none",
                        },
                    }
                ]
            }
        )
    )
    port = free_port()
    process = ManagedProcess(
        "litellm",
        [venv / "bin" / "litellm", "--config", config, "--port", str(port), "--num_workers", "1"],
        folder / "litellm.log",
        env={"LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOG": "ERROR"},
        cwd=folder,
    )
    process.start()
    process.wait_until(
        lambda: http_ok(f"http://127.0.0.1:{port}/health/liveliness"), 180, "serving"
    )
    return process, port


# --- measurements -----------------------------------------------------------------------


def latency(target: Target, requests: int) -> tuple[float, float]:
    """p50 and p99 (ms) of sequential chat completions on one keep-alive connection."""
    body = json.dumps(CHAT)
    headers = {"Content-Type": "application/json", **target.headers}
    connection = http.client.HTTPConnection(target.host, target.port, timeout=30)
    times: list[float] = []
    try:
        for index in range(requests + requests // 10):  # the first tenth warms up
            started = time.perf_counter()
            connection.request("POST", f"{target.prefix}/chat/completions", body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{target.name}: {response.status}")
            if index >= requests // 10:
                times.append(time.perf_counter() - started)
    finally:
        connection.close()
    return percentile(times, 50) * 1000, percentile(times, 99) * 1000


def throughput(target: Target, seconds: float, concurrency: int) -> tuple[float, int]:
    """Requests per second from `hey`, and how many answers were not 200."""
    args = [binary("hey"), "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST"]
    args += ["-T", "application/json", "-d", json.dumps(CHAT)]
    for name, value in target.headers.items():
        args += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        [*map(str, args), f"{target.url}/chat/completions"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise RuntimeError(f"hey printed no rate for {target.name}:\n{output}")
    rps = float(found.group(1))
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)}
    return rps, sum(n for code, n in codes.items() if code != 200)


async def _streams(target: Target, seconds: float, streams: int) -> float:
    body = {**CHAT, "stream": True}
    deadline = time.perf_counter() + seconds
    events = 0
    connector = aiohttp.TCPConnector(limit=streams)
    async with aiohttp.ClientSession(connector=connector, headers=target.headers) as session:

        async def one() -> None:
            nonlocal events
            while time.perf_counter() < deadline:
                async with session.post(f"{target.url}/chat/completions", json=body) as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"{target.name}: {answer.status}")
                    async for line in answer.content:
                        if line.startswith(b"data: {"):
                            events += 1

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(streams)))
        return events / (time.perf_counter() - started)


def streaming(target: Target, seconds: float, streams: int) -> float:
    return asyncio.run(_streams(target, seconds, streams))


def measure(target: Target, args: argparse.Namespace) -> Figures:
    figures = Figures()
    print(f"  {target.name}: latency", flush=True)
    figures.p50_ms, figures.p99_ms = latency(target, args.requests)
    before = process_cpu_seconds(target.process)
    print(f"  {target.name}: throughput ({args.seconds:.0f} s)", flush=True)
    figures.rps, figures.errors = throughput(target, args.seconds, args.concurrency)
    print(f"  {target.name}: streaming ({args.seconds:.0f} s)", flush=True)
    figures.tokens_per_second = streaming(target, args.seconds, args.streams)
    figures.cpu_seconds = process_cpu_seconds(target.process) - before
    return figures


# --- the run ----------------------------------------------------------------------------


def report(results: dict[str, Figures], args: argparse.Namespace) -> None:
    print()
    print(
        f"  {'target':<9}{'p50 ms':>8}{'p99 ms':>8}{'added p50':>11}{'RPS':>9}{'non-200':>9}"
        f"{'stream tok/s':>14}{'vs direct':>11}{'CPU s':>8}"
    )
    direct = results["direct"]
    for name, f in results.items():
        added = f"{f.p50_ms - direct.p50_ms:+.3f}" if name != "direct" else ""
        ratio = f.tokens_per_second / direct.tokens_per_second
        print(
            f"  {name:<9}{f.p50_ms:>8.3f}{f.p99_ms:>8.3f}{added:>11}{f.rps:>9.0f}{f.errors:>9}"
            f"{f.tokens_per_second:>14.0f}{ratio:>11.2f}{f.cpu_seconds:>8.1f}"
        )
    gateway_figures = results.get("gateway")
    if gateway_figures is None:
        return
    print()
    extra = gateway_figures.p50_ms - direct.p50_ms
    stream = gateway_figures.tokens_per_second / direct.tokens_per_second
    print(f"  targets: added p50 {extra:.3f} ms (<= 1 ms: {verdict(extra <= 1)})")
    print(f"           streaming {stream:.2f} x direct (>= 0.95: {verdict(stream >= 0.95)})")
    litellm_figures = results.get("litellm")
    if litellm_figures is not None:
        times = gateway_figures.rps / litellm_figures.rps
        print(f"           RPS {times:.1f} x LiteLLM's (>= 2: {verdict(times >= 2)})")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=256)
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--keep-logs", type=Path)
    args = parser.parse_args()
    print(f"gateway_proxy: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(f"  load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  code: {revision(ROOT)}; stub streams {args.chunks} events per answer")
    results: dict[str, Figures] = {}
    with (
        scratch_folder("modelserve-gateway-bench-", args.keep_logs) as folder,
        contextlib.ExitStack() as stack,
    ):
        stub, port = start_stub(folder, args.chunks)
        stack.callback(stub.stop)
        upstream = f"http://127.0.0.1:{port}/v1"
        targets = [Target("direct", "127.0.0.1", port, "/v1", {}, stub)]
        routed = stack.enter_context(routed_gateway(folder, upstream, MODEL))
        targets.append(
            Target("gateway", "127.0.0.1", routed.port, "/v1", routed.headers, routed.process)
        )
        if not args.skip_litellm:
            litellm, litellm_port = start_litellm(folder, upstream)
            stack.callback(litellm.stop)
            headers = {"Authorization": f"Bearer {LITELLM_KEY}"}
            targets.append(Target("litellm", "127.0.0.1", litellm_port, "/v1", headers, litellm))
        for target in targets:
            results[target.name] = measure(target, args)
    report(results, args)


if __name__ == "__main__":
    main()
