"""The jobs routes as `Call`s (method, path, query, body and the parser of the answer),
pure like `modelserve.client.calls`: the sync and async clients only send them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from modelserve.client.calls import Call, list_of, path_segment, query_of
from modelserve.client.jobs.answers import (
    DataGenJob,
    EvalExamples,
    EvalJob,
    Generation,
    Job,
    JobStats,
    TypedJob,
)

J = TypeVar("J", bound=TypedJob)


def _given(**fields: Any) -> dict[str, Any]:
    """The fields a caller gave: the others are left to the platform's defaults."""
    return {key: value for key, value in fields.items() if value is not None}


def list_jobs(
    *,
    type: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Call[list[Job]]:
    query = query_of(type=type, status=status, limit=limit, offset=offset)
    return Call("GET", "/jobs", list_of(Job), query)


def job_stats() -> Call[JobStats]:
    return Call("GET", "/jobs/stats", JobStats.model_validate)


def get_job(job_id: str) -> Call[Job]:
    return Call("GET", f"/jobs/{path_segment(job_id)}", Job.model_validate)


def cancel_job(job_id: str) -> Call[Job]:
    return Call("POST", f"/jobs/{path_segment(job_id)}/cancel", Job.model_validate)


def refreshed(job: J) -> Call[J]:
    """The job again, from its own type's route (what wait_for_job polls for it)."""
    return Call("GET", f"{job.ROUTE}/{path_segment(job.job_id)}", type(job).model_validate)


# --- evaluation -----------------------------------------------------------------------


def eval_job(
    model_id: str,
    name: str,
    dataset_ref: str,
    max_samples: int | None = None,
    *,
    metrics: Sequence[str] | None = None,
    per_example_logging: bool | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    budget: int | None = None,
    algorithm: str | None = None,
    answer_pattern: str | None = None,
) -> Call[EvalJob]:
    body = _given(
        model_id=model_id,
        name=name,
        dataset_ref=dataset_ref,
        max_samples=max_samples,
        metrics=None if metrics is None else list(metrics),
        per_example_logging=per_example_logging,
        max_tokens=max_tokens,
        temperature=temperature,
        budget=budget,
        algorithm=algorithm,
        answer_pattern=answer_pattern,
    )
    return Call("POST", EvalJob.ROUTE, EvalJob.model_validate, body=body)


def get_eval_job(job_id: str) -> Call[EvalJob]:
    return Call("GET", f"{EvalJob.ROUTE}/{path_segment(job_id)}", EvalJob.model_validate)


def list_eval_jobs(
    *, status: str | None = None, limit: int | None = None, offset: int | None = None
) -> Call[list[EvalJob]]:
    query = query_of(status=status, limit=limit, offset=offset)
    return Call("GET", EvalJob.ROUTE, list_of(EvalJob), query)


def eval_examples(
    job_id: str, *, offset: int | None = None, limit: int | None = None
) -> Call[EvalExamples]:
    path = f"{EvalJob.ROUTE}/{path_segment(job_id)}/examples"
    return Call("GET", path, EvalExamples.model_validate, query_of(offset=offset, limit=limit))


# --- data generation ------------------------------------------------------------------


def data_gen_job(
    model_id: str,
    *,
    num_examples: int,
    output_dir: str,
    strategy: str = "self_instruct",
    domain: str | None = None,
    seed_tasks: Sequence[Mapping[str, Any]] | None = None,
    seed_file: str | None = None,
    **config: Any,
) -> Call[DataGenJob]:
    """POST /data_gen/jobs; `config` is the rest of the body's `config` (`shard_size`,
    `overgenerate`, `similarity_threshold`, `examples_per_prompt`, `max_tokens`,
    `temperature`)."""
    given = _given(
        num_examples=num_examples,
        output_dir=output_dir,
        domain=domain,
        seed_tasks=None if seed_tasks is None else [dict(task) for task in seed_tasks],
        seed_file=seed_file,
        **config,
    )
    body = {"model_id": model_id, "strategy": strategy, "config": given}
    return Call("POST", DataGenJob.ROUTE, DataGenJob.model_validate, body=body)


def get_data_gen_job(job_id: str) -> Call[DataGenJob]:
    return Call("GET", f"{DataGenJob.ROUTE}/{path_segment(job_id)}", DataGenJob.model_validate)


def list_data_gen_jobs(
    *, status: str | None = None, limit: int | None = None, offset: int | None = None
) -> Call[list[DataGenJob]]:
    query = query_of(status=status, limit=limit, offset=offset)
    return Call("GET", DataGenJob.ROUTE, list_of(DataGenJob), query)


def resume_data_gen_job(job_id: str) -> Call[DataGenJob]:
    path = f"{DataGenJob.ROUTE}/{path_segment(job_id)}/resume"
    return Call("POST", path, DataGenJob.model_validate)


# --- queued generation ----------------------------------------------------------------


def generate(
    model: str,
    prompt: str | Sequence[str],
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    mode: str | None = None,
) -> Call[Generation]:
    """POST /generate of one prompt (seed 003's `prompt`) or several (`prompts`)."""
    prompts = {"prompt": prompt} if isinstance(prompt, str) else {"prompts": list(prompt)}
    body = {
        "model": model,
        **prompts,
        **_given(max_tokens=max_tokens, temperature=temperature, top_p=top_p, mode=mode),
    }
    return Call("POST", Generation.ROUTE, Generation.model_validate, body=body)


def get_generation(job_id: str) -> Call[Generation]:
    return Call("GET", f"{Generation.ROUTE}/{path_segment(job_id)}", Generation.model_validate)
