"""One real llama-server behind the platform's three paths, side by side in one run.

    .venv/bin/python bench/serving_path.py [--rounds 3] [--tokens 64] [--levels 1,4,16]

The test bed's control plane runs a `llamacpp` ModelServe (SmolLM2-135M, one replica,
`--parallel 16`), whose pod the pod runner really runs: `llama-server` on its pod IP in
the pod network. Its chat completions are streamed three ways:

- direct: the pod's IP and port, as nothing in the platform reaches it;
- traefik: Traefik at `/{server-id}/v1`, the per-server route, which leads to the gateway
  (so this path is Traefik + gateway + pod);
- gateway: `modelserve-gateway`'s `/v1` with a JWT, routing to the pod's endpoint.

At each concurrency level, each round runs every path in turn (the order rotates between
rounds), with `level` concurrent streams of exactly `--tokens` tokens (`ignore_eos`).
Printed per path and level: median time to first token, its added p50 over direct, and
tokens/s (all streams' tokens over the wall time of the batch), and its ratio to direct.
The issue's targets: tokens/s >= 0.95 x direct, added p50 time to first token <= 2 ms.
Nothing asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.bench_bed import bench_bed
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.measuring import percentile, revision, scratch_folder
from modelserve.testbed.testing_loop import wait_ready
from modelserve.testbed.traefik import start_traefik

ROOT = Path(__file__).resolve().parents[1]
SECRET = "serving-path-bench-secret-of-32-bytes!"
SERVED = "smollm2-bench"
OWNER = "bench"


@dataclass(frozen=True)
class Path_:
    name: str
    url: str  # the chat completions URL
    headers: dict[str, str]
    with_model: bool


@dataclass
class Samples:
    ttft: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    errors: int = 0
    failures: list[str] = field(default_factory=list)  # what the first few errors said


@contextlib.contextmanager
def served(folder: Path, parallel: int) -> Iterator[tuple[KubeCluster, dict[str, str], str]]:
    """Everything, from nothing: the paths' base URLs and a token of the server's owner."""
    with contextlib.ExitStack() as stack:
        found_bed = stack.enter_context(bench_bed(folder, secret=SECRET, name="serving_path"))
        cluster, uri, gateway = found_bed.cluster, found_bed.uri, found_bed.gateway
        traefik = start_traefik(folder / "traefik", cluster, gateway_url=gateway.url)
        stack.callback(traefik.stop)
        body = {
            "apiVersion": "llm.modelserve.io/v1alpha1",
            "kind": "ModelServe",
            "metadata": {"name": "bench", "namespace": "default", "labels": {OWNER_LABEL: OWNER}},
            "spec": {
                "runtime": "llamacpp",
                "model": {"uri": uri, "format": "gguf", "servedName": SERVED},
                "replicas": 1,
                "args": ["--ctx-size", str(256 * parallel), "--parallel", str(parallel)],
            },
        }
        cluster.kubectl("apply", stdin=yaml.safe_dump(body))
        found = wait_ready(cluster, "default", "bench", 1)
        pods = cluster.get_json("pods", "-l", "llm.modelserve.io/modelserve=bench")["items"]
        pod_ip = pods[0]["status"]["podIP"]
        token = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET))).sign(OWNER)
        bases = {
            "direct": f"http://{pod_ip}:8080/v1",
            "traefik": f"{traefik.url}/{found['status']['serverId']}/v1",
            "gateway": f"{gateway.url}/v1",
        }
        yield cluster, bases, token


async def one_stream(
    session: aiohttp.ClientSession, path: Path_, tokens: int, samples: Samples
) -> int:
    """One streamed chat; the content chunks it got (one per token on llama-server)."""
    body: dict[str, object] = {
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": True,
        "temperature": 0.8,
    }
    if path.with_model:
        body["model"] = SERVED
    started = time.perf_counter()
    try:
        return await _read_stream(session, path, body, started, samples)
    except aiohttp.ClientError as error:
        samples.errors += 1
        samples.failures.append(repr(error))
        return 0


async def _read_stream(
    session: aiohttp.ClientSession,
    path: Path_,
    body: dict[str, object],
    started: float,
    samples: Samples,
) -> int:
    got = 0
    async with session.post(path.url, json=body, headers=path.headers) as answer:
        if answer.status != 200:
            samples.errors += 1
            samples.failures.append(f"{answer.status} {(await answer.read())[:300]!r}")
            return 0
        async for line in answer.content:
            if not line.startswith(b"data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                samples.errors += 1
                samples.failures.append(str(event["error"])[:300])
                return got
            choices = event.get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                if got == 0:
                    samples.ttft.append(time.perf_counter() - started)
                got += 1
    return got


async def batch(
    session: aiohttp.ClientSession, path: Path_, level: int, tokens: int, samples: Samples
) -> None:
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(one_stream(session, path, tokens, samples) for _ in range(level))
    )
    samples.rates.append(sum(counts) / (time.perf_counter() - started))


async def measure(
    paths: list[Path_], levels: list[int], rounds: int, tokens: int
) -> dict[tuple[str, int], Samples]:
    results = {(path.name, level): Samples() for path in paths for level in levels}
    # Below the servers' 5 s idle timeout (uvicorn's, httplib's): no request on a connection
    # the server is closing.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for path in paths:  # warm-up: connections, the server's first prompt
            await batch(session, path, 1, 8, Samples())
        for level in levels:
            for number in range(rounds):
                order = paths[number % len(paths) :] + paths[: number % len(paths)]
                for path in order:
                    await batch(session, path, level, tokens, results[(path.name, level)])
    return results


def report(results: dict[tuple[str, int], Samples], paths: list[Path_], levels: list[int]) -> str:
    lines = [
        "| streams | path | TTFT p50 | added p50 | tokens/s | vs direct | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in levels:
        direct = results[("direct", level)]
        base_ttft = percentile(direct.ttft, 50)
        base_rate = statistics.median(direct.rates)
        for path in paths:
            got = results[(path.name, level)]
            ttft = percentile(got.ttft, 50)
            rate = statistics.median(got.rates)
            added = "" if path.name == "direct" else f"{(ttft - base_ttft) * 1000:+.2f} ms"
            lines.append(
                f"| {level} | {path.name} | {ttft * 1000:.1f} ms | {added} | {rate:.1f} | "
                f"{rate / base_rate:.3f} | {got.errors} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--keep", type=Path, help="copy the run's logs here")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    with (
        scratch_folder("serving-path", args.keep) as folder,
        served(folder, max(levels)) as (
            _,
            bases,
            token,
        ),
    ):
        auth = {"Authorization": f"Bearer {token}"}
        paths = [
            Path_("direct", f"{bases['direct']}/chat/completions", {}, True),
            Path_("traefik", f"{bases['traefik']}/chat/completions", auth, False),
            Path_("gateway", f"{bases['gateway']}/chat/completions", auth, True),
        ]
        results = asyncio.run(measure(paths, levels, args.rounds, args.tokens))
    print(f"serving_path at {revision(ROOT)}, {args.rounds} rounds, {args.tokens} tokens a stream")
    print(report(results, paths, levels))
    for (name, level), samples in sorted(results.items()):
        for failure in samples.failures[:3]:
            print(f"{name} at {level}: {failure}")


if __name__ == "__main__":
    main()
