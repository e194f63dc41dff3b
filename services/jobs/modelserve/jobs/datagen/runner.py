"""A data-generation job as the engine runs it: the executor asks the model for one new
task per item (through the gateway, as the job's owner), the finisher keeps the examples
that pass and writes them as shards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from pydantic import BaseModel, ValidationError

from modelserve.jobs.datagen.examples import Example, parse, prompt, stop_words
from modelserve.jobs.datagen.plan import DataGenSpec, shard_key
from modelserve.jobs.datagen.shards import Assembler, Selection, chunks, select
from modelserve.jobs.executors import ItemFailed
from modelserve.jobs.gateway import GatewayClient
from modelserve.jobs.outputs import JobFiles, json_line
from modelserve.jobs.store import Item, Job

TEXT_KEPT = 2000
# Up to this many instructions, near duplicates are looked for in a thread (measured:
# 2,000 in 0.2 s, `bench/datagen_dedup.py --count 2000`); beyond, in a process.
IN_THREAD_UP_TO = 2000


class _Sampling(BaseModel):
    """The part of a job's spec that one item needs."""

    domain: str | None = None
    max_tokens: int
    temperature: float


class _ItemInput(BaseModel):
    examples: list[Example]


class SelfInstructExecutor:
    """One item: a completion of the Self-Instruct prompt over the item's tasks; its
    output is the parsed example, or why there is none (`rejected`), and the raw text."""

    def __init__(self, gateway: GatewayClient) -> None:
        self._gateway = gateway

    async def __call__(self, item: Item) -> Any:
        try:
            sampling = _Sampling.model_validate(item.spec)
            shown = _ItemInput.model_validate(item.input).examples
        except ValidationError as error:
            raise ItemFailed("invalid_item", f"not a data-generation item: {error}") from error
        body = {
            "model": item.model,
            "prompt": prompt(shown, sampling.domain),
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "stop": stop_words(shown),
        }
        answer = await self._gateway.post(
            "/v1/completions",
            body,
            owner=item.job_owner,
            key_id=item.key_id,
            since=item.job_queued_at,
        )
        try:
            choice = answer["choices"][0]
            text = str(choice["text"])
            finish_reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError) as error:
            raise ItemFailed("bad_answer", "the model's answer has no completion") from error
        parsed = parse(text, finish_reason=finish_reason)
        return {**parsed.as_output(), "text": text[:TEXT_KEPT], "finish_reason": finish_reason}


async def write_shards(job: Job, files: JobFiles) -> dict[str, Any]:
    """The finisher: the kept examples as `<output_dir>/shard-00000.jsonl`, … and the
    job's summary (examples, shards and their counts, why the others were dropped)."""
    spec = DataGenSpec.model_validate(job.spec)
    assembler = Assembler(spec.seeds, spec.num_examples, spec.similarity_threshold)
    async for outcome in files.outcomes(job.id):
        assembler.offer(outcome)
    assembler.settle(
        await select_off_loop(
            assembler.seeds, assembler.instructions(), spec.similarity_threshold, spec.num_examples
        )
    )
    shards = []
    for number, examples in enumerate(chunks(assembler.kept, spec.shard_size)):
        key = shard_key(spec.output_key, number)
        count, size = await files.upload(key, _lines(examples))
        shards.append(
            {
                "name": key.rpartition("/")[2],
                "key": key,
                "uri": files.uri(key),
                "examples": count,
                "bytes": size,
            }
        )
    return {
        "examples": len(assembler.kept),
        "short": len(assembler.kept) < spec.num_examples,
        "shards": shards,
        "rejected": dict(sorted(assembler.rejected.items())),
        "items_failed": assembler.items_failed,
        "surplus": assembler.surplus,
    }


async def select_off_loop(
    seeds: list[str], instructions: list[str], threshold: float, limit: int
) -> Selection:
    """`select`, off the event loop, which must go on renewing this replica's leases and
    answering its API: in a thread for a few instructions (a process would take longer
    to start than they take), in a process of its own beyond (no GIL shared with the
    loop)."""
    if len(instructions) <= IN_THREAD_UP_TO:
        return await asyncio.to_thread(select, seeds, instructions, threshold, limit)
    executor = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    try:
        return await asyncio.get_running_loop().run_in_executor(
            executor, select, seeds, instructions, threshold, limit
        )
    finally:
        # Not waiting: a finisher cancelled mid-way (the service stopping) leaves the
        # process to end its pass and exit by itself rather than blocking the loop.
        executor.shutdown(wait=False, cancel_futures=True)


async def _lines(examples: Sequence[Example]) -> AsyncIterator[bytes]:
    for example in examples:
        yield json_line(example.model_dump())
