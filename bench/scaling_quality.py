"""SmolLM2's accuracy on arithmetic, with and without inference-time scaling.

    .venv/bin/python bench/scaling_quality.py [--count 100] [--budgets 1,4,8]
        [--algorithms self-consistency,best-of-n] [--reward logprob] [--max-tokens 16]

The task set is `modelserve.testbed.arithmetic` (seeded: the same questions every run).
Each question goes through the gateway (`routed_gateway`: the real control plane, the
operator and an external ModelServe for SmolLM2 on llama.cpp's native server with
`--parallel 8`, what the platform's `llamacpp` runtime runs) as a chat
completion with `budget` and `algorithm`; budget 1 is the plain answer, shared by every
algorithm. An answer is right when the number it ends with (the same extraction as
self-consistency's vote) is the task's. Prints the accuracy per algorithm and budget,
with the time each took. Whatever the numbers: SmolLM2-135M is a very small model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx

from modelserve.common.answers import extract_answer, normalize
from modelserve.testbed.arithmetic import Task, tasks
from modelserve.testbed.llama_server import start_llama_server
from modelserve.testbed.llm import MODEL_ALIAS
from modelserve.testbed.routed import RoutedGateway, routed_gateway


async def ask(
    http: httpx.AsyncClient,
    model: str,
    task: Task,
    *,
    algorithm: str,
    budget: int,
    max_tokens: int,
) -> bool:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": task.question}],
        "max_tokens": max_tokens,
        "temperature": 0.8 if budget > 1 else 0.0,
        "budget": budget,
        "algorithm": algorithm if budget > 1 else "none",
    }
    answer = await http.post("/v1/chat/completions", json=body)
    while answer.status_code == 503:  # not ready for a moment: as a client would, wait
        await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
        answer = await http.post("/v1/chat/completions", json=body)
    if answer.status_code != 200:
        raise RuntimeError(f"the gateway answered {answer.status_code}: {answer.text}")
    text = answer.json()["choices"][0]["message"]["content"] or ""
    found = extract_answer(text)
    return found is not None and normalize(found) == task.answer


async def accuracy(
    gateway: RoutedGateway,
    model: str,
    questions: list[Task],
    *,
    algorithm: str,
    budget: int,
    max_tokens: int,
    concurrency: int,
) -> tuple[float, float]:
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=gateway.headers, timeout=600
    ) as http:

        async def one(task: Task) -> bool:
            async with slots:
                return await ask(
                    http, model, task, algorithm=algorithm, budget=budget, max_tokens=max_tokens
                )

        started = time.monotonic()
        right = await asyncio.gather(*(one(task) for task in questions))
        return sum(right) / len(right), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--budgets", default="1,4,8")
    parser.add_argument("--algorithms", default="self-consistency,best-of-n")
    parser.add_argument("--reward", default="logprob", choices=["logprob", "judge"])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    budgets = [int(budget) for budget in args.budgets.split(",")]
    algorithms = [name.strip() for name in args.algorithms.split(",")]
    questions = tasks(args.count)
    print(f"scaling_quality: {len(questions)} arithmetic questions, {os.cpu_count()} CPUs")
    print(f"  algorithms {', '.join(algorithms)}; budgets {budgets}; reward {args.reward}")
    with tempfile.TemporaryDirectory(prefix="modelserve-quality-") as folder:
        llm = start_llama_server(Path(folder), parallel=8)
        try:
            with routed_gateway(Path(folder), llm.url, MODEL_ALIAS) as gateway:
                gateway.configure(MODEL_ALIAS, reward=args.reward)
                results: dict[tuple[str, int], tuple[float, float]] = {}
                for budget in budgets:
                    for algorithm in algorithms if budget > 1 else algorithms[:1]:
                        results[(algorithm, budget)] = asyncio.run(
                            accuracy(
                                gateway,
                                MODEL_ALIAS,
                                questions,
                                algorithm=algorithm,
                                budget=budget,
                                max_tokens=args.max_tokens,
                                concurrency=args.concurrency,
                            )
                        )
                        right, seconds = results[(algorithm, budget)]
                        label = algorithm if budget > 1 else "plain"
                        print(f"  {label:<18} budget {budget}: {right:6.1%} in {seconds:6.1f} s")
        finally:
            llm.stop()
    print()
    print(f"  {'algorithm':<18}" + "".join(f"{'budget ' + str(b):>12}" for b in budgets))
    for algorithm in algorithms:
        row = "".join(
            f"{results[(algorithm if b > 1 else algorithms[0], b)][0]:>12.1%}" for b in budgets
        )
        print(f"  {algorithm:<18}{row}")


if __name__ == "__main__":
    main()
