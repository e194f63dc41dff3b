"""The node agent's pure reading of `nvidia-smi --query-gpu` output (tests/nodeagent/data)."""

from __future__ import annotations

from pathlib import Path

from modelserve.common.gpu_reports import GpuFigures
from modelserve.nodeagent.smi import (
    limits_command,
    parse_gpus,
    parse_limits,
    query_command,
    set_limit_command,
)

DATA = Path(__file__).parent / "data"
# Seed 003's RTX 3090, as nvidia-smi prints the agent's query for it.
RTX_3090 = (
    "0, GPU-1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718, NVIDIA GeForce RTX 3090, 580.95.05, "
    "24576, 181, 0, 1, 41, 21.38, 350.00, 0"
)


def test_the_query_asks_for_the_seed_s_fields_in_order() -> None:
    assert query_command("/usr/bin/nvidia-smi") == [
        "/usr/bin/nvidia-smi",
        "--query-gpu=index,uuid,name,driver_version,memory.total,memory.used,"
        "utilization.gpu,utilization.memory,temperature.gpu,power.draw,power.limit,fan.speed",
        "--format=csv,noheader,nounits",
    ]
    assert limits_command("nvidia-smi")[1] == "--query-gpu=index,power.min_limit,power.max_limit"
    assert set_limit_command("nvidia-smi", 1, 220.0) == ["nvidia-smi", "-i", "1", "-pl", "220"]
    assert set_limit_command("nvidia-smi", 0, 150.5)[-1] == "150.5"


def test_one_gpu_gives_the_seed_s_figures() -> None:
    parsed = parse_gpus(RTX_3090 + "\n")
    assert parsed.problems == ()
    (gpu,) = parsed.gpus
    assert gpu.to_wire() == {
        "index": 0,
        "uuid": "GPU-1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718",
        "name": "NVIDIA GeForce RTX 3090",
        "driver_version": "580.95.05",
        "memory_total_mb": 24576,
        "memory_used_mb": 181,
        "utilization_gpu": 0,
        "utilization_mem": 1,
        "temperature_gpu": 41,
        "power_draw_w": 21.38,
        "power_limit_w": 350,
        "fan_speed_pct": 0,
        "unavailable": {},
    }


def test_several_gpus_and_figures_a_gpu_does_not_give() -> None:
    parsed = parse_gpus((DATA / "nvidia-smi-query.csv").read_text())
    assert parsed.problems == ()
    assert [gpu.index for gpu in parsed.gpus] == [0, 1, 2, 3]
    busy = parsed.gpus[1]
    assert (busy.memory_used_mb, busy.utilization_gpu, busy.power_draw_w) == (40953, 97, 372.41)
    # A data centre GPU has no fan: no figure, and what nvidia-smi said instead.
    assert busy.fan_speed_pct is None
    assert busy.unavailable == {"fan_speed_pct": "[N/A]"}
    assert busy.to_wire()["fan_speed_pct"] is None


def test_not_supported_and_unknown_values_are_none_never_zero() -> None:
    line = (
        "0, GPU-a, Tesla K80, 470.82.01, 11441, [Not Supported], 0, [Unknown Error], 30, "
        "[N/A], 149.00, [N/A]"
    )
    (gpu,) = parse_gpus(line).gpus
    assert gpu.memory_used_mb is None and gpu.utilization_mem is None and gpu.power_draw_w is None
    assert gpu.unavailable == {
        "memory_used_mb": "[Not Supported]",
        "utilization_mem": "[Unknown Error]",
        "power_draw_w": "[N/A]",
        "fan_speed_pct": "[N/A]",
    }
    assert gpu.power_limit_w == 149.0


def test_bad_lines_are_named_and_the_others_kept() -> None:
    text = "\n".join(
        [
            RTX_3090,
            "",
            "1, GPU-b, NVIDIA L4, 550.54.15, 23034",  # cut short
            "x, GPU-c, NVIDIA L4, 550.54.15, 23034, 0, 0, 0, 30, 16.1, 72.00, [N/A]",
            "2, GPU-d, NVIDIA L4, 550.54.15, 23034, 0, 0, 0, thirty, 16.1, 72.00, [N/A]",
        ]
    )
    parsed = parse_gpus(text)
    assert [gpu.index for gpu in parsed.gpus] == [0, 2]
    assert parsed.problems == (
        "line 3: 5 fields, not 12",
        "line 4: the GPU index 'x' is not a number",
    )
    # A figure that is not a number is unavailable, with what was there.
    assert parsed.gpus[1].temperature_gpu is None
    assert parsed.gpus[1].unavailable == {"temperature_gpu": "thirty", "fan_speed_pct": "[N/A]"}


def test_nothing_or_an_error_message_gives_no_gpu() -> None:
    assert parse_gpus("").gpus == ()
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    parsed = parse_gpus(message)
    assert parsed.gpus == () and len(parsed.problems) == 1


def test_power_limit_bounds() -> None:
    limits = parse_limits((DATA / "nvidia-smi-limits.csv").read_text() + "junk\n4, [N/A], [N/A]\n")
    assert limits[0].minimum == 100.0 and limits[1].maximum == 400.0
    assert (limits[4].minimum, limits[4].maximum) == (None, None)
    assert set(limits) == {0, 1, 2, 3, 4}


def test_figures_survive_the_lease_round_trip() -> None:
    for gpu in parse_gpus((DATA / "nvidia-smi-query.csv").read_text()).gpus:
        assert GpuFigures.from_wire(gpu.to_wire()) == gpu
