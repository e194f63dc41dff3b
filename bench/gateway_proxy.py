"""What the gateway adds to an OpenAI request, with and without limits, beside direct access
and two other gateways.

    .venv/bin/python bench/gateway_proxy.py [--seconds 10] [--rate 1000] [--requests 2000]
        [--concurrency 64] [--streams 8] [--chunks 256] [--workers 1,2] [--policy off,on]
        [--skip-litellm] [--skip-portkey] [--profile FILE] [--code-from COMMIT]

One zero-latency upstream (`modelserve.testbed.openai_stub`: canned answers, or
`--chunks` SSE events when streamed) is reached in turn by:

- direct: the stub itself;
- gateway: `modelserve-gateway` with GATEWAY_WORKERS 1 and 2 (`--workers`), routing the
  model `stub` to an `external` ModelServe that the operator reports Ready, on the test
  bed's real control plane and PostgreSQL (`modelserve.testbed.proxy_bed`), each run alone;
  policy off: no contract service, nothing is limited; policy on: GATEWAY_CONTRACT_URL
  names a contract service on the same PostgreSQL, where the caller (the server's owner,
  a user, not an admin: admins are never limited) has a contract with
  `requests_per_minute` and `token_budget` too high to be reached, so that every request
  is decided against the limits and its usage recorded;
- litellm: LiteLLM's proxy (one worker) with a key that has an rpm limit and a budget, and
  portkey: Portkey's open-source gateway (npm), both as `modelserve.testbed.proxy_peers`
  sets them up and says why (LiteLLM runs without its database: prisma's engines cannot
  be downloaded here). Before LiteLLM is measured, keys with tiny limits check
  that it refuses past them.

For each: latency of `--requests` sequential non-streamed chat completions on one
keep-alive connection (p50/p99); an open loop at `--rate` requests a second for
`--seconds` (`vegeta`: p50/p99 of every answer; "added" is the figure minus direct's);
the most requests per second (`hey`, `--concurrency` at once, for `--seconds`); streamed
tokens per second (`--streams` concurrent streams of `--chunks` events, for `--seconds`,
each event counted as it arrives). The CPU each server used is read from /proc (for
workers, the parent and all its children), over the whole run and per answer in the
most-requests phase ("CPU µs/req": with the load generators on the same CPUs, the rate
a target reaches depends on what they leave it; its CPU per answer does not). A gateway
with the policy on counts the contract service's and PostgreSQL's CPU as its own, and
each of its phases ends once the usage it recorded has been delivered to the contract
service (the outbox is empty), so that the next phase does not pay for it.

`--profile FILE`: py-spy samples the one-worker gateway with policy on during its
fixed-rate phase; its collapsed stacks go to FILE, and the top 25 functions by own time
and by total time are printed. `--code-from COMMIT` runs the gateway and the contract
service from that commit's code (`git archive`, put first on their PYTHONPATH), for a
before-and-after with the same bench (a commit without GATEWAY_WORKERS runs one process).

The issue's targets are printed as met or NOT met (policy on, one worker unless said):
added p50 <= 0.5 ms and p99 <= 2 ms at 1,000 requests/s; maximum requests/s >= 2 x the
best peer's (LiteLLM with its limits on; Portkey has none); two workers >= 1.7 x one;
streaming >= 95% of direct. Nothing asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http.client
import io
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg

from modelserve.testbed.gobuild import binary
from modelserve.testbed.measuring import cpu_seconds, percentile, revision, scratch_folder
from modelserve.testbed.open_loop import FixedRate, fixed_rate
from modelserve.testbed.platform import RunningService
from modelserve.testbed.processes import ManagedProcess, descendants, free_port, http_ok
from modelserve.testbed.proxy_bed import OWNER, ProxyBed, proxy_bed
from modelserve.testbed.proxy_peers import (
    LITELLM_VERSION,
    PORTKEY_VERSION,
    Peer,
    check_litellm_limits,
    start_litellm,
    start_portkey,
)
from modelserve.testbed.stack_profiles import short_frame, start_recording, top_functions

ROOT = Path(__file__).resolve().parents[1]
MODEL = "stub"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}
# The caller's contract with policy on: limits set (so each request is decided and
# counted against them) and never reached in a run.
CONTRACT = {"requests_per_minute": 1_000_000_000, "token_budget": 1_000_000_000_000_000}
# The peers' limits, likewise out of reach: LiteLLM's key rpm and its budget (US dollars).
PEER_RPM = 1_000_000_000
PEER_BUDGET = 1_000_000.0
TOP = 25
# One request answered within this long: the target has no backlog left.
SETTLED_SECONDS = 0.05


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    headers: dict[str, str]
    process: ManagedProcess
    host: str = "127.0.0.1"
    prefix: str = "/v1"  # the path before /chat/completions
    # Work a phase leaves behind (usage records not yet delivered), waited for after it.
    backlog: Callable[[], int] | None = None
    # Processes whose CPU is the target's too (the contract service and PostgreSQL, for a
    # gateway with the policy on: its decisions' and its usage's share of the work).
    also: tuple[ManagedProcess, ...] = ()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"


@dataclass
class Figures:
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    fixed: FixedRate | None = None
    rps: float = math.nan
    errors: int = 0
    tokens_per_second: float = math.nan
    cpu_seconds: float = math.nan
    cpu_us_per_request: float = math.nan
    notes: list[str] = field(default_factory=list)


def process_cpu_seconds(process: ManagedProcess) -> float:
    """User + system CPU of the process and everything under it (a gateway's workers)."""
    if not process.pid:
        return math.nan
    return cpu_seconds(descendants([process.pid]), waited_children=True)


def target_cpu_seconds(target: Target) -> float:
    return sum(process_cpu_seconds(process) for process in (target.process, *target.also))


def start_stub(folder: Path, chunks: int) -> tuple[ManagedProcess, int]:
    port = free_port()
    command = [sys.executable, "-m", "modelserve.testbed.openai_stub", "--port", str(port)]
    process = ManagedProcess(
        "openai-stub",
        [*command, "--chunks", str(chunks)],
        folder / "stub.log",
    )
    process.start()
    process.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), 30, "serving")
    return process, port


@contextlib.contextmanager
def code_from(commit: str | None, folder: Path) -> Iterator[dict[str, str]]:
    """The environment that runs the services from `commit`'s code (none: this tree's)."""
    if commit is None:
        yield {}
        return
    tree = folder / f"code-{commit}"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "common", "services"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    paths = [tree / "common", *sorted((tree / "services").iterdir())]
    yield {"PYTHONPATH": os.pathsep.join(str(path) for path in paths)}


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
                raise RuntimeError(f"{target.name}: {response.status} {response.reason}")
            if index >= requests // 10:
                times.append(time.perf_counter() - started)
    finally:
        connection.close()
    return percentile(times, 50) * 1000, percentile(times, 99) * 1000


def throughput(target: Target, seconds: float, concurrency: int) -> tuple[float, int, int]:
    """Requests per second from `hey`, how many answers were not 200, and how many
    answers there were."""
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
    return rps, sum(n for code, n in codes.items() if code != 200), sum(codes.values())


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
                        text = (await answer.text())[:200]
                        raise RuntimeError(f"{target.name}: {answer.status} {text}")
                    async for line in answer.content:
                        if line.startswith(b"data: {"):
                            events += 1

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(streams)))
        return events / (time.perf_counter() - started)


def streaming(target: Target, seconds: float, streams: int) -> float:
    return asyncio.run(_streams(target, seconds, streams))


def open_loop(
    target: Target, args: argparse.Namespace, folder: Path, profile: Path | None
) -> FixedRate:
    """The fixed-rate phase (after one second of warm-up at the same rate), with py-spy
    on the target's process when `profile` names where its stacks go."""
    url = f"{target.url}/chat/completions"
    body = json.dumps(CHAT).encode()
    fixed_rate(url, body, target.headers, rate=args.rate, seconds=1, folder=folder)
    recorder = None
    if profile is not None and target.process.pid is not None:
        recorder = start_recording(target.process.pid, args.seconds, profile, folder / "py-spy.log")
    try:
        return fixed_rate(
            url, body, target.headers, rate=args.rate, seconds=args.seconds, folder=folder
        )
    finally:
        if recorder is not None:
            recorder.wait(timeout=args.seconds + 60)
        settle(target)


def settle(target: Target, timeout: float = 60) -> None:
    """Wait until the target answers one request quickly again: a target that could not
    keep up with the fixed rate still works through what it queued (answers its clients
    no longer wait for), which would count against the next phase. A gateway with the
    policy on also delivers the phase's usage to the contract service: that is waited
    for too (it costs the gateway, the contract service and PostgreSQL CPU)."""
    deadline = time.monotonic() + timeout
    while target.backlog is not None and target.backlog() > 0:
        if time.monotonic() > deadline:
            print(f"  {target.name}: usage still undelivered after {timeout:g} s", flush=True)
            break
        time.sleep(0.2)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            latency(target, 1)
        except (OSError, RuntimeError):
            answered = False  # refused or failed: not settled yet
        else:
            answered = time.perf_counter() - started < SETTLED_SECONDS
        if answered:
            return
        time.sleep(0.5)


def measure(
    target: Target, args: argparse.Namespace, folder: Path, profile: Path | None = None
) -> Figures:
    figures = Figures()
    before = target_cpu_seconds(target)
    print(f"  {target.name}: latency ({args.requests} sequential)", flush=True)
    figures.p50_ms, figures.p99_ms = latency(target, args.requests)
    print(f"  {target.name}: {args.rate} requests/s ({args.seconds:g} s)", flush=True)
    figures.fixed = open_loop(target, args, folder, profile)
    print(f"  {target.name}: the most requests/s ({args.seconds:g} s)", flush=True)
    cpu = target_cpu_seconds(target)
    figures.rps, figures.errors, answered = throughput(target, args.seconds, args.concurrency)
    settle(target)  # its usage delivered too: that CPU is the answers' as well
    # The target's CPU per answer at its most: what it would serve on a CPU of its own.
    figures.cpu_us_per_request = (target_cpu_seconds(target) - cpu) / answered * 1e6
    print(f"  {target.name}: streaming ({args.seconds:g} s)", flush=True)
    try:
        figures.tokens_per_second = streaming(target, args.seconds, args.streams)
    except (RuntimeError, aiohttp.ClientError) as error:
        figures.notes.append(f"streaming failed: {error}")
    figures.cpu_seconds = target_cpu_seconds(target) - before
    return figures


# --- the gateways -----------------------------------------------------------------------


def recorded_requests(bed: ProxyBed) -> int:
    """Requests the contract service has recorded for the caller (its usage table)."""
    with psycopg.connect(bed.postgres.dsn("contract_bench")) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(requests), 0) FROM usage WHERE subject = %s", [OWNER]
        ).fetchone()
    return int(row[0]) if row else 0


def outbox_rows(bed: ProxyBed) -> int:
    """Usage records the gateway has yet to deliver to the contract service."""
    with psycopg.connect(bed.postgres.dsn("gateway_bench")) as conn:
        row = conn.execute("SELECT count(*) FROM usage_outbox").fetchone()
    return int(row[0]) if row else 0


def measure_gateway(
    bed: ProxyBed,
    workers: int,
    contract: RunningService | None,
    code: dict[str, str],
    args: argparse.Namespace,
    folder: Path,
) -> Figures:
    contract_url = contract.url if contract is not None else None
    name = f"gw{workers}-{'on' if contract_url else 'off'}"
    settings = {"GATEWAY_WORKERS": str(workers), **code}
    if contract_url:
        settings["GATEWAY_CONTRACT_URL"] = contract_url
    profile = args.profile if (args.profile and contract_url and workers == 1) else None
    before = recorded_requests(bed) if contract_url else 0
    with bed.gateway(settings) as service:
        port = int(service.url.rsplit(":", 1)[1])
        headers = {"Authorization": f"Bearer {bed.caller_token()}"}
        target = Target(name, port, headers, service.process)
        if contract is not None:
            also = (contract.process, bed.postgres.process)
            target = dataclasses.replace(target, backlog=lambda: outbox_rows(bed), also=also)
        figures = measure(target, args, folder, profile)
    if contract_url:
        # The gateway sent what its outbox held before it stopped.
        figures.notes.append(f"usage recorded: {recorded_requests(bed) - before:,} requests")
    if profile is not None:
        print_profile(profile)
    return figures


def print_profile(path: Path) -> None:
    found = top_functions(path.read_text(), TOP)
    print(f"\n  py-spy, {found.samples:,} samples (policy on, one worker, fixed rate): {path}")
    for title, rows in (("own time", found.own), ("total time", found.total)):
        print(f"  top {TOP} by {title}:")
        for frame, hits in rows:
            print(f"    {hits / found.samples:6.1%}  {short_frame(frame)}")
    print()


# --- the run ----------------------------------------------------------------------------


def report(results: dict[str, Figures], args: argparse.Namespace) -> None:
    print()
    rate = f"@{args.rate}/s"
    print(
        f"  {'target':<10}{'seq p50':>9}{'seq p99':>9}{rate + ' p50':>13}{'p99':>10}"
        f"{'added p50':>11}{'added p99':>11}{'non-2xx':>8}{'max RPS':>9}{'non-200':>8}"
        f"{'stream tok/s':>13}{'vs direct':>10}{'CPU s':>7}{'CPU µs/req':>11}"
    )
    direct = results["direct"]
    assert direct.fixed is not None
    for name, f in results.items():
        fixed = f.fixed
        assert fixed is not None
        added = name != "direct"
        add50 = f"{fixed.p50_ms - direct.fixed.p50_ms:+.3f}" if added else ""
        add99 = f"{fixed.p99_ms - direct.fixed.p99_ms:+.3f}" if added else ""
        failed = round(fixed.sent * (1 - fixed.success))
        ratio = f.tokens_per_second / direct.tokens_per_second
        print(
            f"  {name:<10}{f.p50_ms:>9.3f}{f.p99_ms:>9.3f}{fixed.p50_ms:>13.3f}"
            f"{fixed.p99_ms:>10.3f}{add50:>11}{add99:>11}{failed:>8}{f.rps:>9.0f}"
            f"{f.errors:>8}{f.tokens_per_second:>13.0f}{ratio:>10.2f}{f.cpu_seconds:>7.1f}"
            f"{f.cpu_us_per_request:>11.0f}"
        )
        if fixed.throughput < 0.95 * fixed.rate:
            print(f"  {'':<10}kept up with {fixed.throughput:,.0f} of {fixed.rate:,} requests/s")
        for note in f.notes:
            print(f"  {'':<10}{note}")
    targets(results, args)


def targets(results: dict[str, Figures], args: argparse.Namespace) -> None:
    one, two = results.get("gw1-on"), results.get("gw2-on")
    direct = results["direct"]
    print()
    if one is None or one.fixed is None or direct.fixed is None:
        print("  targets: need the one-worker gateway with policy on (gw1-on)")
        return
    add50 = one.fixed.p50_ms - direct.fixed.p50_ms
    add99 = one.fixed.p99_ms - direct.fixed.p99_ms
    print(f"  targets, policy on, one worker, {args.rate} requests/s:")
    print(f"    added p50 {add50:.3f} ms (<= 0.5 ms: {verdict(add50 <= 0.5)})")
    print(f"    added p99 {add99:.3f} ms (<= 2 ms: {verdict(add99 <= 2)})")
    peers = {name: results[name] for name in ("litellm", "portkey") if name in results}
    if peers:
        best = max(peers, key=lambda name: peers[name].rps)
        times = one.rps / peers[best].rps
        print(
            f"    max RPS {one.rps:,.0f} = {times:.2f} x the best peer's ({best}, "
            f"{peers[best].rps:,.0f}) (>= 2: {verdict(times >= 2)})"
        )
        for name, figures in peers.items():
            if name != best:
                print(f"      ({one.rps / figures.rps:.2f} x {name}'s {figures.rps:,.0f})")
        # The load generator and the stub share the CPUs: the CPU each target spent per
        # answer says what it would serve with a CPU of its own.
        for name, figures in peers.items():
            print(
                f"      CPU per answer at the most: {one.cpu_us_per_request:,.0f} µs, "
                f"{figures.cpu_us_per_request / one.cpu_us_per_request:.2f} x less than "
                f"{name}'s {figures.cpu_us_per_request:,.0f} µs"
            )
    if two is not None:
        scale = two.rps / one.rps
        print(f"    two workers {scale:.2f} x one (>= 1.7: {verdict(scale >= 1.7)})")
    stream = one.tokens_per_second / direct.tokens_per_second
    print(f"    streaming {stream:.2f} x direct (>= 0.95: {verdict(stream >= 0.95)})")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def choices(value: str, allowed: set[str]) -> list[str]:
    chosen = [item.strip() for item in value.split(",") if item.strip()]
    wrong = [item for item in chosen if item not in allowed]
    if wrong or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {sorted(allowed)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=1000, help="open loop, requests/s")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=256)
    parser.add_argument("--workers", type=lambda v: choices(v, {"1", "2"}), default=["1", "2"])
    parser.add_argument("--policy", type=lambda v: choices(v, {"off", "on"}), default=["off", "on"])
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-portkey", action="store_true")
    parser.add_argument("--profile", type=Path, help="py-spy's collapsed stacks go here")
    parser.add_argument("--code-from", metavar="COMMIT", help="services from this commit")
    parser.add_argument("--keep-logs", type=Path)
    args = parser.parse_args()
    # A `kill` ends the run through the finally blocks: no gateway or cluster left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if args.profile is not None:
        args.profile = args.profile.resolve()
    print(f"gateway_proxy: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(f"  load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  code: {revision(ROOT)}; stub streams {args.chunks} events per answer")
    if args.code_from:
        print(f"  gateway and contract service from commit {args.code_from}")
    results: dict[str, Figures] = {}
    with (
        scratch_folder("modelserve-gateway-bench-", args.keep_logs) as folder,
        contextlib.ExitStack() as stack,
    ):
        stub, port = start_stub(folder, args.chunks)
        stack.callback(stub.stop)
        upstream = f"http://127.0.0.1:{port}/v1"
        results["direct"] = measure(Target("direct", port, {}, stub), args, folder)
        code = stack.enter_context(code_from(args.code_from, folder))
        bed = stack.enter_context(proxy_bed(folder, upstream, MODEL))
        contract = None
        if "on" in args.policy:
            contract = stack.enter_context(bed.contract(CONTRACT, code))
            print(f"  contract of {OWNER!r}: {CONTRACT}")
        for workers in map(int, args.workers):
            for policy in args.policy:
                service = contract if policy == "on" else None
                figures = measure_gateway(bed, workers, service, code, args, folder)
                results[f"gw{workers}-{policy}"] = figures
        peers: list[tuple[str, Peer]] = []
        if not args.skip_litellm:
            peer = start_litellm(folder, upstream, MODEL, rpm=PEER_RPM, budget=PEER_BUDGET)
            stack.callback(peer.process.stop)
            print(f"  litellm {LITELLM_VERSION}: {peer.limits}")
            for line in check_litellm_limits(peer, MODEL):
                print(f"  litellm limits check: {line}")
            peers.append(("litellm", peer))
        if not args.skip_portkey:
            peer = start_portkey(folder, upstream)
            stack.callback(peer.process.stop)
            print(f"  portkey {PORTKEY_VERSION}: limits {peer.limits}")
            peers.append(("portkey", peer))
        for name, peer in peers:
            results[name] = measure(
                Target(name, peer.port, peer.headers, peer.process), args, folder
            )
            peer.process.stop()
    report(results, args)


if __name__ == "__main__":
    main()
