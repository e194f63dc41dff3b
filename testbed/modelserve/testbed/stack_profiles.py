"""Where a Python process spends its time: py-spy (PyPI `py-spy`, in a virtual environment
of its own) samples the process's stacks from outside, without stopping it, and writes
them as collapsed stacks (one line per distinct stack: frames from the outermost, `;`
between them, then how many samples had it). `top_functions` reads the file back: a
function's own time is the samples where it was the innermost frame, its total time
the samples where it was anywhere on the stack (once per sample, however deep)."""

from __future__ import annotations

import collections
import subprocess
from dataclasses import dataclass
from pathlib import Path

from modelserve.testbed.venvs import tool_venv

PY_SPY_VERSION = "0.4.3"
# Samples a second: enough for a ranking in a few seconds, little for the sampled process.
SAMPLE_RATE = 250


@dataclass(frozen=True)
class Profile:
    samples: int
    own: list[tuple[str, int]]
    total: list[tuple[str, int]]


def py_spy() -> Path:
    venv = tool_venv("py-spy", PY_SPY_VERSION, [f"py-spy=={PY_SPY_VERSION}"])
    return venv / "bin" / "py-spy"


def start_recording(pid: int, seconds: float, output: Path, log: Path) -> subprocess.Popen[bytes]:
    """py-spy recording process `pid` for `seconds` into `output` (collapsed stacks),
    aggregated by function (not line); wait for it to end."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            [
                str(py_spy()),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                str(SAMPLE_RATE),
                "--format",
                "raw",
                "--function",
                "--nonblocking",
                "--output",
                str(output),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def top_functions(collapsed: str, count: int) -> Profile:
    """The `count` functions with the most own samples and with the most total samples."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        hits = int(number)
        frames = [frame for frame in stack.split(";") if frame]
        if not frames:
            continue
        samples += hits
        own[frames[-1]] += hits
        for frame in set(frames):
            total[frame] += hits
    return Profile(samples, own.most_common(count), total.most_common(count))


def short_frame(frame: str) -> str:
    """`name (path:line)` with the path from its package on (site-packages/ or the
    checkout's folders left out)."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/modelserve/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "/modelserve/":
                where = "modelserve/" + where
            break
    return f"{name} ({where})" if where else name
