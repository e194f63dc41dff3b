"""What the benchmarks in bench/ read off the machine: percentiles, a process's memory and
CPU time from /proc, the whole machine's busy time, and the code being measured; and the
folder a run works in."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/<pid>/status (VmRSS, VmHWM, ...); empty if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return {
        key: int(value.split()[0])
        for key, _, value in (line.partition(":") for line in lines)
        if value.strip().endswith("kB")
    }


def cpu_seconds(pids: Iterable[int], *, waited_children: bool = False) -> float:
    """User and system CPU of the processes (all their threads) so far; with
    `waited_children`, that of the children they waited for too. Gone ones count 0."""
    last = 15 if waited_children else 13  # utime stime [cutime cstime]
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += sum(int(value) for value in fields[11:last])
    return ticks / CLOCK_TICKS


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all but idle and iowait)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def revision(root: Path) -> str:
    """The commit measured, and the files that differ from it: others may edit as it runs."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return result.stdout.rstrip()

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    edits = f" + uncommitted changes to {', '.join(changed)}" if changed else ""
    return f"commit {git('rev-parse', '--short', 'HEAD') or 'unknown'}{edits}"


@contextlib.contextmanager
def scratch_folder(prefix: str, keep: Path | None = None) -> Iterator[Path]:
    """A new temporary folder for a run's processes and logs, copied to `keep` (when
    given) and removed on the way out."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if keep:
            shutil.copytree(folder, keep, dirs_exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
