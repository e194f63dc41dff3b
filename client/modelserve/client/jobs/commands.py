"""The CLI's job commands (`modelserve jobs …`, `eval …`, `datagen …`, `generate`): their
arguments, and each as the client's method. Waiting draws the job's progress bar on
stderr; the answer is JSON on stdout, as for every command."""

from __future__ import annotations

import argparse
from typing import Any, TypeVar

from pydantic import BaseModel

from modelserve.client.cli import output
from modelserve.client.jobs.answers import Job, TypedJob
from modelserve.client.jobs.bar import JobBar
from modelserve.client.sync_client import Client

COMMANDS = ("jobs", "eval", "datagen", "generate")
STATUSES = ("pending", "running", "done", "failed", "cancelled")
ALGORITHMS = ("best-of-n", "self-consistency", "particle-filtering", "beam-search", "none")
JOB_FAILED = 3  # the exit status of a wait whose job ended failed or cancelled
J = TypeVar("J", bound=TypedJob)


def add_commands(commands: Any) -> None:
    """Add the job commands to the CLI's subparsers (`argparse`'s `_SubParsersAction`)."""
    _add_jobs(commands.add_parser("jobs", help="one's jobs of every type (an admin's: all)"))
    _add_eval(commands.add_parser("eval", help="evaluation jobs"))
    _add_datagen(commands.add_parser("datagen", help="data-generation jobs"))
    generate = commands.add_parser("generate", help="queue prompts (POST /generate)")
    generate.add_argument("model")
    generate.add_argument("prompt", nargs="+", help="one or more prompts")
    generate.add_argument("--max-tokens", type=int)
    generate.add_argument("--temperature", type=float)
    generate.add_argument("--top-p", type=float)
    _wait_options(generate, optional=True)


def _add_jobs(jobs: argparse.ArgumentParser) -> None:
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="jobs, newest first, with their progress")
    listing.add_argument("--type", help="chat, eval, data_gen, generate, batch, …")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int)
    listing.add_argument("--offset", type=int)
    listing.add_argument("--output", **output.OPTION)
    actions.add_parser("stats", help="how many jobs are in each state")
    for name, help in (("get", "one job"), ("cancel", "cancel a pending or running job")):
        actions.add_parser(name, help=help).add_argument("job_id")
    wait = actions.add_parser("wait", help="wait for a job to end, with a progress bar")
    wait.add_argument("job_id")
    _wait_options(wait, optional=False)


def _add_eval(evaluation: argparse.ArgumentParser) -> None:
    actions = evaluation.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="queue an evaluation")
    run.add_argument("--model", required=True, help="the served model to evaluate")
    run.add_argument("--dataset", required=True, help="a JSONL in the store (dataset_ref)")
    run.add_argument("--name", help="default: the dataset's file name without .jsonl")
    run.add_argument("--max-samples", type=int)
    run.add_argument("--metric", action="append", choices=("accuracy", "avg_loss"))
    run.add_argument("--max-tokens", type=int)
    run.add_argument("--temperature", type=float)
    run.add_argument("--budget", type=int, help="evaluate under inference-time scaling")
    run.add_argument("--algorithm", choices=ALGORITHMS)
    run.add_argument("--answer-pattern", help="a regular expression; group 1 is the answer")
    run.add_argument(
        "--no-examples",
        dest="per_example_logging",
        action="store_false",
        default=None,
        help="no per-example log",
    )
    _wait_options(run, optional=True)
    actions.add_parser("get", help="an evaluation and its result").add_argument("job_id")
    listing = actions.add_parser("list", help="evaluations, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int)
    examples = actions.add_parser("examples", help="an evaluation's per-example records")
    examples.add_argument("job_id")
    examples.add_argument("--offset", type=int)
    examples.add_argument("--limit", type=int)


def _add_datagen(datagen: argparse.ArgumentParser) -> None:
    actions = datagen.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="queue a Self-Instruct job")
    run.add_argument("--model", required=True, help="the served model that writes examples")
    run.add_argument("--num-examples", type=int, required=True)
    run.add_argument("--output-dir", required=True, help="where the shards go in the store")
    run.add_argument("--domain")
    run.add_argument("--seed-file", help="a JSONL of seed tasks in the store")
    for option, kind in (
        ("--shard-size", int),
        ("--overgenerate", float),
        ("--similarity-threshold", float),
        ("--examples-per-prompt", int),
        ("--max-tokens", int),
        ("--temperature", float),
    ):
        run.add_argument(option, type=kind)
    _wait_options(run, optional=True)
    actions.add_parser("get", help="a job and its shards").add_argument("job_id")
    listing = actions.add_parser("list", help="data-generation jobs, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int)
    resume = actions.add_parser("resume", help="run a cancelled, failed or short job on")
    resume.add_argument("job_id")
    _wait_options(resume, optional=True)


def _wait_options(parser: argparse.ArgumentParser, *, optional: bool) -> None:
    if optional:
        parser.add_argument("--wait", action="store_true", help="until it ends, with a bar")
    parser.add_argument(
        "--max-wait", type=float, default=3600.0, help="seconds before giving up (3600)"
    )
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds (2)")


def _waited(client: Client, job: J, args: argparse.Namespace) -> J:
    """`job` as it ended, when --wait, with its progress bar on stderr; else as it is."""
    if not args.wait:
        return job
    with JobBar(job.job_id) as bar:
        return client.wait_for_job(
            job, timeout=args.max_wait, poll_interval=args.poll_interval, on_progress=bar
        )


def _jobs(client: Client, args: argparse.Namespace) -> BaseModel | list[Job]:
    action = args.action
    if action == "list":
        return client.list_jobs(
            type=args.type, status=args.status, limit=args.limit, offset=args.offset
        )
    if action == "stats":
        return client.job_stats()
    if action == "get":
        return client.get_job(args.job_id)
    if action == "cancel":
        return client.cancel_job(args.job_id)
    assert action == "wait", action
    job_id: str = args.job_id
    with JobBar(job_id) as bar:
        return client.wait_for_job(
            job_id, timeout=args.max_wait, poll_interval=args.poll_interval, on_progress=bar
        )


def _eval(client: Client, args: argparse.Namespace) -> BaseModel | list[Any]:
    action = args.action
    if action == "get":
        return client.get_eval_job(args.job_id)
    if action == "list":
        return client.list_eval_jobs(status=args.status, limit=args.limit)
    if action == "examples":
        return client.eval_examples(args.job_id, offset=args.offset, limit=args.limit)
    assert action == "run", action
    name = args.name or args.dataset.rsplit("/", 1)[-1].removesuffix(".jsonl")
    job = client.eval_job(
        args.model,
        name,
        args.dataset,
        args.max_samples,
        metrics=args.metric,
        per_example_logging=args.per_example_logging,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        budget=args.budget,
        algorithm=args.algorithm,
        answer_pattern=args.answer_pattern,
    )
    return _waited(client, job, args)


def _datagen(client: Client, args: argparse.Namespace) -> BaseModel | list[Any]:
    action = args.action
    if action == "get":
        return client.get_data_gen_job(args.job_id)
    if action == "list":
        return client.list_data_gen_jobs(status=args.status, limit=args.limit)
    if action == "resume":
        return _waited(client, client.resume_data_gen_job(args.job_id), args)
    assert action == "run", action
    config = {
        "shard_size": args.shard_size,
        "overgenerate": args.overgenerate,
        "similarity_threshold": args.similarity_threshold,
        "examples_per_prompt": args.examples_per_prompt,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
    }
    job = client.data_gen_job(
        args.model,
        num_examples=args.num_examples,
        output_dir=args.output_dir,
        domain=args.domain,
        seed_file=args.seed_file,
        **{key: value for key, value in config.items() if value is not None},
    )
    return _waited(client, job, args)


def run(client: Client, args: argparse.Namespace) -> BaseModel | list[Any]:
    """The answer of the job command `args` names."""
    if args.command == "jobs":
        return _jobs(client, args)
    if args.command == "eval":
        return _eval(client, args)
    if args.command == "datagen":
        return _datagen(client, args)
    assert args.command == "generate", args.command
    prompts: list[str] = args.prompt
    job = client.generate(
        args.model,
        prompts[0] if len(prompts) == 1 else prompts,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
    )
    return _waited(client, job, args)


def exit_status(args: argparse.Namespace, answer: object) -> int:
    """0, or JOB_FAILED when the command waited for a job that ended failed or
    cancelled (its JSON is still printed)."""
    if args.command not in COMMANDS:
        return 0
    waited = getattr(args, "action", None) == "wait" or getattr(args, "wait", False) is True
    status = getattr(answer, "status", None)
    return JOB_FAILED if waited and status in ("failed", "cancelled") else 0
