"""The gateway's process and host figures: the /proc parsers on the kernel's formats, and
the readers on this machine's real /proc."""

from __future__ import annotations

import os
import threading

import pytest

from modelserve.gateway.operations.procfs import (
    disk_figures,
    kib_value,
    memory_figures,
    parse_key_values,
    parse_stat,
    process_figures,
    read_host,
    read_process,
)

# A process whose name holds spaces and a parenthesis, as /proc/<pid>/stat writes it.
STAT = (
    "4242 (uvicorn (w) 1) S 1 4242 4242 0 -1 4194560 5000 0 0 0 "
    "350 150 0 0 20 0 7 0 1000 123456789 30000 18446744073709551615"
)
STATUS = "Name:\tuvicorn\nState:\tS (sleeping)\nVmRSS:\t  120000 kB\nThreads:\t7\n"
MEMINFO = "MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   24000000 kB\n"


def test_key_value_files_are_read_with_their_units() -> None:
    values = parse_key_values(STATUS)
    assert values["Threads"] == "7"
    assert kib_value(values["VmRSS"]) == 120000 * 1024
    assert kib_value("12") == 12


def test_the_stat_line_is_split_after_the_last_parenthesis() -> None:
    fields = parse_stat(STAT)
    assert fields[0] == "S"
    with pytest.raises(ValueError):
        parse_stat("no command name here")


def test_process_figures() -> None:
    # 350 + 150 ticks at 100 a second; started 1000 ticks (10 s) after boot, now 110 s.
    found = process_figures(STAT, STATUS, uptime="110.00 300.00\n", open_fds=12, clock_ticks=100)
    assert found == {
        "rss_bytes": 120000 * 1024,
        "cpu_seconds": 5.0,
        "open_fds": 12,
        "threads": 7,
        "uptime_seconds": 100.0,
    }


def test_memory_is_total_less_available_in_gigabytes() -> None:
    assert memory_figures(MEMINFO) == {
        "ram_used_gb": 8.2,
        "ram_total_gb": 32.8,
        "ram_percent": 25.0,
    }


def test_disk_figures() -> None:
    found = disk_figures("/", used=111_100_000_000, total=249_800_000_000)
    assert found == {"mount": "/", "used_gb": 111.1, "total_gb": 249.8, "percent": 44.5}


def test_this_process_as_proc_shows_it() -> None:
    started = threading.Event()
    worker = threading.Thread(target=started.wait)
    worker.start()
    try:
        found = read_process()
    finally:
        started.set()
        worker.join()
    assert found["pid"] == os.getpid()
    assert found["rss_bytes"] > 10 * 2**20
    assert found["threads"] >= 2
    assert found["open_fds"] >= 3
    assert found["cpu_seconds"] > 0
    assert found["uptime_seconds"] >= 0


def test_this_host_as_proc_shows_it() -> None:
    found = read_host()
    assert found["cpu_count"] == os.cpu_count()
    assert found["cpu_load"] >= 0
    assert 0 < found["ram_used_gb"] <= found["ram_total_gb"]
    (disk,) = found["disk"]
    assert disk["mount"] == "/"
    assert 0 < disk["used_gb"] <= disk["total_gb"]
