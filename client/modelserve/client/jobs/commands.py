"""The CLI's job commands (`modelserve jobs …`, `eval run`, `datagen run`): their
arguments, and each as the client's method. Waiting shows the job's progress bar on
stderr; the answer is JSON on stdout, as for every command."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel

from modelserve.client.jobs.answers import Job
from modelserve.client.jobs.bar import JobBar
from modelserve.client.sync_client import Client

COMMANDS = ("jobs",)
STATUSES = ("pending", "running", "done", "failed", "cancelled")
JOB_FAILED = 3  # the exit status of a wait whose job ended failed or cancelled


def add_commands(commands: Any) -> None:
    """Add the job commands to the CLI's subparsers (`argparse`'s `_SubParsersAction`)."""
    jobs = commands.add_parser("jobs", help="one's jobs (an admin's: all)")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="jobs, newest first, with their progress")
    listing.add_argument("--type", help="chat, eval, data_gen, generate, batch, …")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int)
    listing.add_argument("--offset", type=int)
    actions.add_parser("stats", help="how many jobs are in each state")
    for name, help in (("get", "one job"), ("cancel", "cancel a pending or running job")):
        actions.add_parser(name, help=help).add_argument("job_id")
    wait = actions.add_parser("wait", help="wait for a job to end, with a progress bar")
    wait.add_argument("job_id")
    _wait_arguments(wait)


def _wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-wait", type=float, default=3600.0, help="seconds before giving up (3600)"
    )
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds (2)")


def wait(client: Client, job_id: str, args: argparse.Namespace) -> Job:
    """wait_for_job with the job's progress bar on stderr."""
    with JobBar(job_id) as bar:
        return client.wait_for_job(
            job_id, timeout=args.max_wait, poll_interval=args.poll_interval, on_progress=bar
        )


def run(client: Client, args: argparse.Namespace) -> BaseModel | list[Job]:
    """The answer of the job command `args` names."""
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
    return wait(client, args.job_id, args)


def exit_status(args: argparse.Namespace, answer: object) -> int:
    """0, or JOB_FAILED when the command waited for a job that ended failed or
    cancelled (its JSON is still printed)."""
    if args.command not in COMMANDS:
        return 0
    waited = getattr(args, "action", None) == "wait" or getattr(args, "wait", False) is True
    status = getattr(answer, "status", None)
    return JOB_FAILED if waited and status in ("failed", "cancelled") else 0
