"""How long each test-bed component takes to become usable, and what it holds in memory.

    .venv/bin/python bench/testbed_startup.py

Prints one line per component: seconds from start to ready (as the fixtures judge
it) and the resident memory of its processes once ready. Run on a warm cache: the
build time is `modelserve-testbed build`'s business, not this benchmark's.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from modelserve.testbed.kube import start_cluster
from modelserve.testbed.llm import start_llm
from modelserve.testbed.objectstores import UPSTREAM_BUCKET, start_minio
from modelserve.testbed.postgres import start_postgres
from modelserve.testbed.processes import ManagedProcess, descendants


def rss_mib(processes: Iterable[ManagedProcess]) -> float:
    """Resident memory of the processes and their children, from /proc."""
    pids = [p.pid for p in processes if p.pid]
    total_kib = 0
    for pid in descendants(pids):
        status = Path(f"/proc/{pid}/status")
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except FileNotFoundError:
            continue  # exited in the meantime
    return total_kib / 1024


def measure(
    name: str, start: Callable[[], tuple[list[ManagedProcess], Callable[[], None]]]
) -> None:
    began = time.monotonic()
    processes, stop = start()
    ready = time.monotonic() - began
    print(f"{name:<12} ready in {ready:6.1f} s   RSS {rss_mib(processes):7.1f} MiB", flush=True)
    stop()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as tmp:
        folder = Path(tmp)

        def kube() -> tuple[list[ManagedProcess], Callable[[], None]]:
            cluster = start_cluster(folder / "kube")
            return cluster.processes, cluster.stop

        def postgres() -> tuple[list[ManagedProcess], Callable[[], None]]:
            server = start_postgres(log_folder=folder / "logs")
            return [server.process], server.stop

        def minio() -> tuple[list[ManagedProcess], Callable[[], None]]:
            server = start_minio("bench", folder, bucket=UPSTREAM_BUCKET)
            return [server.process], server.stop

        def llm() -> tuple[list[ManagedProcess], Callable[[], None]]:
            server = start_llm(folder)
            return [server.process], server.stop

        measure("kubernetes", kube)
        measure("postgresql", postgres)
        measure("minio", minio)
        measure("llm", llm)


if __name__ == "__main__":
    main()
