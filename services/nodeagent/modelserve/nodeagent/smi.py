"""Reading `nvidia-smi --query-gpu` output: pure functions, no process run here.

With `--format=csv,noheader,nounits` nvidia-smi prints one line per GPU, the queried
fields in order, separated by ", ". A field the GPU or driver does not give is printed
as a bracketed word instead of a number: "[N/A]", "[Not Supported]", "[Unknown Error]";
such a field is None here, the word kept in `unavailable`. A line that cannot be read (a
wrong number of fields, an index that is not a number) is left out and named in
`problems`; the other lines still count.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from modelserve.common.gpu_reports import GpuFigures

# The fields asked for, in order, and the GpuFigures field each becomes.
QUERY: tuple[tuple[str, str], ...] = (
    ("index", "index"),
    ("uuid", "uuid"),
    ("name", "name"),
    ("driver_version", "driver_version"),
    ("memory.total", "memory_total_mb"),
    ("memory.used", "memory_used_mb"),
    ("utilization.gpu", "utilization_gpu"),
    ("utilization.memory", "utilization_mem"),
    ("temperature.gpu", "temperature_gpu"),
    ("power.draw", "power_draw_w"),
    ("power.limit", "power_limit_w"),
    ("fan.speed", "fan_speed_pct"),
)
LIMITS_QUERY = ("index", "power.min_limit", "power.max_limit")
CSV_FORMAT = "--format=csv,noheader,nounits"
TEXT_FIELDS = {"uuid", "name", "driver_version"}


def query_command(nvidia_smi: str) -> list[str]:
    fields = ",".join(name for name, _ in QUERY)
    return [nvidia_smi, f"--query-gpu={fields}", CSV_FORMAT]


def limits_command(nvidia_smi: str) -> list[str]:
    return [nvidia_smi, f"--query-gpu={','.join(LIMITS_QUERY)}", CSV_FORMAT]


def set_limit_command(nvidia_smi: str, index: int, watts: float) -> list[str]:
    return [nvidia_smi, "-i", str(index), "-pl", f"{watts:g}"]


@dataclasses.dataclass(frozen=True)
class Parsed:
    gpus: tuple[GpuFigures, ...]
    problems: tuple[str, ...] = ()


def _unavailable(value: str) -> bool:
    return value.startswith("[") and value.endswith("]")


def _fields(line: str, count: int) -> list[str] | None:
    values = [value.strip() for value in line.split(",")]
    # A GPU name has no comma in practice; should one, its line would not be read.
    return values if len(values) == count else None


def parse_gpus(text: str) -> Parsed:
    """Each GPU's figures from the output of `query_command`."""
    gpus: list[GpuFigures] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        values = _fields(line, len(QUERY))
        if values is None:
            problems.append(f"line {number}: {len(line.split(','))} fields, not {len(QUERY)}")
            continue
        figures: dict[str, Any] = {}
        unavailable: dict[str, str] = {}
        index: int | None = None
        for (_, field), value in zip(QUERY, values, strict=True):
            if field == "index":
                index = int(value) if value.isdigit() else None
            elif _unavailable(value) or value == "":
                unavailable[field] = value or "(empty)"
            elif field in TEXT_FIELDS:
                figures[field] = value
            else:
                try:
                    figures[field] = float(value)
                except ValueError:
                    unavailable[field] = value
        if index is None:
            problems.append(f"line {number}: the GPU index {values[0]!r} is not a number")
            continue
        gpus.append(GpuFigures(index=index, unavailable=unavailable, **figures))
    return Parsed(tuple(gpus), tuple(problems))


@dataclasses.dataclass(frozen=True)
class Limits:
    minimum: float | None
    maximum: float | None


def parse_limits(text: str) -> dict[int, Limits]:
    """Each GPU's power limit bounds (watts) from the output of `limits_command`; a bound
    nvidia-smi does not give is None. Unreadable lines are left out."""
    found: dict[int, Limits] = {}
    for line in text.splitlines():
        values = _fields(line, len(LIMITS_QUERY)) if line.strip() else None
        if values is None or not values[0].isdigit():
            continue
        bounds = []
        for value in values[1:]:
            try:
                bounds.append(None if _unavailable(value) else float(value))
            except ValueError:
                bounds.append(None)
        found[int(values[0])] = Limits(bounds[0], bounds[1])
    return found
