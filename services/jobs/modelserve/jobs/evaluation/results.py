"""An evaluation job's per-example records, its summary, and the finisher that writes
them: `jobs/<id>/examples.jsonl` in the platform store (when the job logs examples) and
the result (`accuracy`, `total_samples`, `correct`, `avg_loss`, …).

`total_samples` counts the examples that were asked and judged; a line that is no
example, or whose request the gateway refused, is counted in `failed` and is no sample.
`avg_loss` is the mean, over the samples whose answers carried log-probabilities, of each
answer's mean negative log-probability per generated token (None when none did, as a
scaled answer does not).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from modelserve.common import bucket_layout
from modelserve.common.database import fetch_all
from modelserve.jobs.evaluation.examples import EvalSpec
from modelserve.jobs.outputs import JobFiles, json_line
from modelserve.jobs.store import Job


def examples_key(job_id: str) -> str:
    return f"{bucket_layout.JOB_OUTPUTS}{job_id}/examples.jsonl"


def example_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """One line of the per-example log from a finished item (index, state, input,
    output, error): the dataset line's number, then the judgement or the error."""
    record: dict[str, Any] = {"index": row["index"], "line": row["input"]["line"]}
    if row["state"] == "done":
        record.update(row["output"])
        record["error"] = None
    else:
        record["error"] = row["error"]
    return record


async def example_page(
    pool: AsyncConnectionPool, job_id: str, *, offset: int, limit: int
) -> list[dict[str, Any]]:
    """The records of the job's finished items with index offset … offset + limit - 1."""
    rows = await fetch_all(
        pool,
        """SELECT index, state, input, output, error FROM job_items
           WHERE job_id = %s AND index >= %s AND index < %s AND state IN ('done', 'failed')
           ORDER BY index""",
        [job_id, offset, offset + limit],
    )
    return [example_record(row) for row in rows]


@dataclass
class Tally:
    """The summary of a job's records, as they come."""

    samples: int = 0
    correct: int = 0
    failed: int = 0
    losses: list[float] = field(default_factory=list)

    def add(self, record: Mapping[str, Any]) -> None:
        if record.get("error") is not None:
            self.failed += 1
            return
        self.samples += 1
        self.correct += 1 if record.get("correct") else 0
        if isinstance(record.get("loss"), int | float):
            self.losses.append(float(record["loss"]))

    def result(self) -> dict[str, Any]:
        return {
            "accuracy": self.correct / self.samples if self.samples else None,
            "total_samples": self.samples,
            "correct": self.correct,
            "failed": self.failed,
            "avg_loss": math.fsum(self.losses) / len(self.losses) if self.losses else None,
            "loss_samples": len(self.losses),
        }


async def finish_eval(job: Job, files: JobFiles) -> dict[str, Any]:
    """The finisher of `eval` jobs: the per-example log (when asked for) and the result."""
    spec = EvalSpec.model_validate(job.spec)
    tally = Tally()

    async def lines() -> AsyncIterator[bytes]:
        async for row in files.outcomes(job.id):
            record = example_record(row)
            tally.add(record)
            yield json_line(record)

    examples: str | None = None
    if spec.per_example_logging:
        key = examples_key(job.id)
        await files.upload(key, lines())
        examples = files.uri(key)
    else:
        async for _ in lines():
            pass
    return {"name": spec.name, **tally.result(), "examples": examples}
