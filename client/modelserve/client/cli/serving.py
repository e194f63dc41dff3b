"""`modelserve serve … --wait`: serve, then poll GET /status/{id} until the server is
Ready, drawing its state on stderr (a spinner line redrawn in place on a terminal, a line
per change elsewhere). A server that stays Failed for --failed-for seconds (the operator
restarts a failed container, so one failure need not be the end), or that is being
deleted, ends the wait: the command prints it and exits 3 with the reason on stderr."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, TextIO

from modelserve.client.answers import Server
from modelserve.client.errors import ModelServeError
from modelserve.client.sync_client import Client

READY, FAILED, STOPPING = "Ready", "Failed", "Stopping"
SERVER_FAILED = 3  # the exit status of a wait whose server failed (as a failed job's)
SPINNER = "|/-\\"


def add_command(commands: Any, output: Any) -> None:
    serve = commands.add_parser("serve", help="serve a model (--wait: until it is Ready)")
    named = serve.add_mutually_exclusive_group(required=True)
    named.add_argument("--model-name")
    named.add_argument("--model-uuid")
    serve.add_argument("--replicas", type=int)
    serve.add_argument("--gpus", type=int, help="per replica; with --nodes, per node")
    serve.add_argument(
        "--nodes",
        type=int,
        help="spread the model over N nodes (2-16), --gpus on each: each replica is a "
        "group of N pods (runtime vllm only)",
    )
    serve.add_argument(
        "--tensor",
        type=int,
        help="with --nodes: vLLM's tensor parallel size (default: --gpus); "
        "tensor x pipeline = nodes x gpus",
    )
    serve.add_argument(
        "--pipeline",
        type=int,
        help="with --nodes: vLLM's pipeline parallel size (default: --nodes)",
    )
    serve.add_argument("--gpu-type")
    serve.add_argument("--runtime", choices=("llamacpp", "vllm"))
    serve.add_argument("--runtime-params")
    serve.add_argument("--served-name")
    serve.add_argument("--namespace")
    serve.add_argument("--team", help="the team the server counts against")
    serve.add_argument("--wait", action="store_true", help="until the server is Ready")
    serve.add_argument(
        "--max-wait", type=float, default=900.0, help="seconds before giving up (900)"
    )
    serve.add_argument("--poll-interval", type=float, default=2.0, help="seconds (2)")
    serve.add_argument(
        "--failed-for",
        type=float,
        default=60.0,
        help="seconds a server may stay Failed before the wait gives up (60)",
    )
    serve.add_argument("--output", **output)


def describe(server: Server, elapsed: float) -> str:
    """One line of where a server stands."""
    line = (
        f"{server.name}: {server.status} {server.ready_replicas}/{server.replicas} ready"
        f" ({elapsed:.0f} s)"
    )
    return f"{line}: {server.message}" if server.message else line


class StateLine:
    """A wait's `on_update`: the server's state on `stream`."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._terminal = stream.isatty()
        self._turn = 0
        self._last: tuple[str, int, str] | None = None

    def __call__(self, server: Server, elapsed: float) -> None:
        if self._terminal:
            spinner = SPINNER[self._turn % len(SPINNER)]
            self._turn += 1
            # \r and "erase to the end of the line": the line is redrawn in place.
            self._stream.write(f"\r{spinner} {describe(server, elapsed)[:150]}\x1b[K")
        else:
            state = (server.status, server.ready_replicas, server.message)
            if state == self._last:
                return
            self._last = state
            self._stream.write(describe(server, elapsed) + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._terminal and self._turn:
            self._stream.write("\n")
            self._stream.flush()


def wait_until_ready(
    client: Client,
    server_id: str,
    *,
    max_wait: float,
    poll_interval: float,
    failed_for: float,
    on_update: Callable[[Server, float], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Server:
    """The server once Ready, or as it was when it had been Failed for `failed_for`
    seconds or was being deleted; raises ModelServeError `timeout` after `max_wait`."""
    started = clock()
    failing_since: float | None = None
    while True:
        server = client.status(server_id)
        now = clock()
        on_update(server, now - started)
        if server.status in (READY, STOPPING):
            return server
        if server.status != FAILED:
            failing_since = None
        elif failing_since is None:
            failing_since = now
        if failing_since is not None and now - failing_since >= failed_for:
            return server
        if now - started >= max_wait:
            raise ModelServeError(
                "timeout",
                f"server {server_id} still {server.status} after {max_wait:g} s",
                None,
                server.model_dump(mode="json"),
            )
        sleep(poll_interval)


def parallelism_of(args: argparse.Namespace) -> dict[str, int] | None:
    """The body's `parallelism` from --tensor and --pipeline: both, or neither (then the
    gateway gives vLLM tensor = gpus and pipeline = nodes)."""
    if args.tensor is None and args.pipeline is None:
        return None
    if args.tensor is None or args.pipeline is None:
        # A usage error (exit status 2), before anything is sent.
        raise ValueError("--tensor and --pipeline go together: give both, or neither")
    return {"tensor": args.tensor, "pipeline": args.pipeline}


def run(client: Client, args: argparse.Namespace, *, stderr: TextIO) -> Server:
    fields = {
        "replicas": args.replicas,
        "gpus": args.gpus,
        "nodes": args.nodes,
        "gpu_type": args.gpu_type,
        "runtime": args.runtime,
        "runtime_params": args.runtime_params,
        "served_name": args.served_name,
        "namespace": args.namespace,
        "team": args.team,
    }
    chosen = {key: value for key, value in fields.items() if value is not None}
    parallelism = parallelism_of(args)
    if parallelism is not None:
        chosen["parallelism"] = parallelism
    server = client.serve(model_name=args.model_name, model_uuid=args.model_uuid, **chosen)
    if not args.wait:
        return server
    line = StateLine(stderr)
    try:
        return wait_until_ready(
            client,
            server.server_id,
            max_wait=args.max_wait,
            poll_interval=args.poll_interval,
            failed_for=args.failed_for,
            on_update=line,
        )
    finally:
        line.close()


def exit_status(args: argparse.Namespace, answer: object, stderr: TextIO) -> int | None:
    """SERVER_FAILED, with the reason on stderr, when `serve --wait` ended on a server
    that is not Ready; None for every other command."""
    if args.command != "serve" or not args.wait or not isinstance(answer, Server):
        return None
    if answer.status == READY:
        return 0
    stderr.write(f"modelserve: server {answer.server_id} {answer.status}: {answer.message}\n")
    return SERVER_FAILED
