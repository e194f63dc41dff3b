"""Peak memory and CPU of each ModelServe service while a benchmark loads it: the figures
behind the chart's resource requests and limits (charts/modelserve/values.yaml).

    .venv/bin/python bench/service_resources.py [--interval 0.5] -- COMMAND...

e.g. `bench/service_resources.py -- .venv/bin/python bench/gateway_proxy.py --skip-litellm`.
Runs COMMAND and, every `--interval` seconds until it exits, finds the processes under it
whose command line names a service's console script (modelserve-gateway, -contract,
-download, -jobs, -operator) and reads each one's /proc/<pid>/status (VmHWM: its peak
resident memory) and /proc/<pid>/stat (user and system CPU time). Prints, per service
process: peak RSS, mean CPU over its life and the busiest `--window` seconds' CPU (in
cores). The benchmark's own output passes through. Nothing asserts: figures are printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from modelserve.testbed.measuring import cpu_seconds, proc_status

SERVICES = ("gateway", "contract", "download", "jobs", "operator")


@dataclass
class Watched:
    """One service process: when it was first seen, its CPU samples, its peak memory."""

    service: str
    first_seen: float
    first_cpu: float
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    peak_kib: int = 0
    busiest: float = 0.0


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            found += kids
            todo += kids
    return found


def service_of(pid: int) -> str | None:
    """The service whose console script `pid` runs, if any."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return None
    for arg in argv[:3]:
        name = Path(arg.decode(errors="replace")).name
        for service in SERVICES:
            if name == f"modelserve-{service}":
                return service
    return None


def sample(root: int, watched: dict[int, Watched], window: float) -> None:
    now = time.monotonic()
    for pid in children(root):
        if pid not in watched:
            service = service_of(pid)
            if service is None:
                continue
            watched[pid] = Watched(service, now, cpu_seconds([pid]))
        entry = watched[pid]
        status = proc_status(pid)
        if not status:
            continue
        entry.peak_kib = max(entry.peak_kib, status.get("VmHWM", 0))
        used = cpu_seconds([pid])
        entry.samples.append((now, used))
        while entry.samples and now - entry.samples[0][0] > window:
            start = entry.samples.popleft()
            entry.busiest = max(entry.busiest, (used - start[1]) / (now - start[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--window", type=float, default=5.0, help="seconds of the busiest CPU")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a benchmark command is needed after --")
    watched: dict[int, Watched] = {}
    process = subprocess.Popen(command)
    while process.poll() is None:
        sample(process.pid, watched, args.window)
        time.sleep(args.interval)
    print(f"\nservice_resources: {os.cpu_count()} CPUs; {' '.join(command)}")
    print(f"  {'service':<10}{'pid':>8}{'peak RSS MiB':>14}{'mean cores':>12}{'busiest':>10}")
    for pid, entry in sorted(watched.items(), key=lambda item: item[1].service):
        if not entry.samples:
            continue
        last_time, last_cpu = entry.samples[-1]
        life = max(last_time - entry.first_seen, 1e-9)
        mean = (last_cpu - entry.first_cpu) / life
        print(
            f"  {entry.service:<10}{pid:>8}{entry.peak_kib / 1024:>14.0f}"
            f"{mean:>12.2f}{entry.busiest:>10.2f}"
        )
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
