"""The gateway's own process and the host it runs on, from Linux's /proc and statvfs.

The parsers are pure (text in, numbers out); `read_process` and `read_host` read the
files. In a container, /proc/meminfo and /proc/loadavg are the node's (the kernel's),
not the container's limits: GET /system labels them as the gateway replica's host.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

GB = 10**9
KIB = 1024
# /proc/<pid>/stat fields after the command name (field 3 is index 0).
_UTIME, _STIME, _THREADS, _STARTTIME = 11, 12, 17, 19


def parse_key_values(text: str) -> dict[str, str]:
    """`Key:  value` lines (/proc/meminfo, /proc/<pid>/status) as a dict of raw values."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            found[key.strip()] = value.strip()
    return found


def kib_value(value: str) -> int:
    """A `1234 kB` value of /proc as bytes (the kernel's kB are KiB)."""
    number, _, unit = value.partition(" ")
    return int(number) * (KIB if unit.strip() == "kB" else 1)


def parse_stat(text: str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name, which may hold spaces and
    parentheses (so the split is at the last ')')."""
    _, sep, rest = text.rpartition(")")
    if not sep:
        raise ValueError("not a /proc/<pid>/stat line")
    return rest.split()


def process_figures(
    stat: str, status: str, *, uptime: str, open_fds: int, clock_ticks: int
) -> dict[str, Any]:
    """CPU seconds, memory, threads and age of a process, from its stat and status files
    and the system's /proc/uptime."""
    fields = parse_stat(stat)
    values = parse_key_values(status)
    started = int(fields[_STARTTIME]) / clock_ticks
    return {
        "rss_bytes": kib_value(values["VmRSS"]) if "VmRSS" in values else None,
        "cpu_seconds": round((int(fields[_UTIME]) + int(fields[_STIME])) / clock_ticks, 2),
        "open_fds": open_fds,
        "threads": int(values.get("Threads", fields[_THREADS])),
        "uptime_seconds": round(max(0.0, float(uptime.split()[0]) - started), 1),
    }


def memory_figures(meminfo: str) -> dict[str, float]:
    """RAM in GB (10^9 bytes), as the seed shows it: used is total less available."""
    values = parse_key_values(meminfo)
    total = kib_value(values["MemTotal"])
    available = kib_value(values.get("MemAvailable", values.get("MemFree", "0 kB")))
    used = total - available
    return {
        "ram_used_gb": round(used / GB, 1),
        "ram_total_gb": round(total / GB, 1),
        "ram_percent": round(100 * used / total, 1) if total else 0.0,
    }


def disk_figures(mount: str, used: int, total: int) -> dict[str, Any]:
    return {
        "mount": mount,
        "used_gb": round(used / GB, 1),
        "total_gb": round(total / GB, 1),
        "percent": round(100 * used / total, 1) if total else 0.0,
    }


def read_process(proc: Path = Path("/proc")) -> dict[str, Any]:
    """This process, from /proc; OSError where there is no /proc."""
    own = proc / "self"
    return {
        "pid": os.getpid(),
        **process_figures(
            (own / "stat").read_text(),
            (own / "status").read_text(),
            uptime=(proc / "uptime").read_text(),
            open_fds=sum(1 for _ in (own / "fd").iterdir()),
            clock_ticks=os.sysconf("SC_CLK_TCK"),
        ),
    }


def read_host(proc: Path = Path("/proc"), mounts: tuple[str, ...] = ("/",)) -> dict[str, Any]:
    """The seed's host figures: the 1-minute load average, RAM and disks; OSError where
    there is no /proc."""
    load = float((proc / "loadavg").read_text().split()[0])
    disks = []
    for mount in mounts:
        usage = shutil.disk_usage(mount)
        disks.append(disk_figures(mount, usage.used, usage.total))
    return {
        "cpu_load": load,
        "cpu_count": os.cpu_count(),
        **memory_figures((proc / "meminfo").read_text()),
        "disk": disks,
    }
