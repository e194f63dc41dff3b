"""MinIO to MinIO throughput of the download service beside `mc cp`, and their peak memory.

    .venv/bin/python bench/download_throughput.py [--size-mb 2048] [--small-mb 256]
        [--files 200] [--file-mb 10] [--part-mb 16] [--parallel-parts 4] [--repeat 1]

Sizes are MiB. Starts PostgreSQL and two MinIO servers (upstream and platform, their
data on disk in a temporary folder), then writes three sources upstream, streamed from a
seeded generator (incompressible bytes; no object is ever whole in memory):

- a large object (`--size-mb`) and a small one (`--small-mb`): the service's memory
  should not grow with the object. Both are named .gguf, as single-file models are:
  the service keeps their first 64 MiB to read a GGUF header, and warns that random
  bytes have none;
- a folder of `--files` files of `--file-mb`, with a manifest.json of their SHA-256.

For each source and repetition:

- `mc cp` (`--recursive` for the folder) copies it into the platform bucket under mc/;
  its time is the process's, its CPU from wait4, its peak memory from GNU time's
  report (`/usr/bin/time -v`; without it, VmHWM polled every 0.05 s);
- a fresh `modelserve-download` process is asked for it (POST /downloads with the
  expected SHA-256, so the copy is verified) and polled every 0.2 s until ready. Its
  time is the job's own, created_at to finished_at (PostgreSQL's clock, the same
  machine): the polls would add up to 0.2 s. Its peak memory is the process's VmHWM
  (a fresh process for each run, so the peak is that run's), its CPU from /proc.

mc goes first in odd repetitions, the service in even ones. Both copies leave the
platform bucket after each run. Targets (the issue's): the service at 0.9 x mc's
throughput or better, its peak memory flat in the object's size. Nothing asserts on
them: the figures are printed, with the machine, the load and the commit.
`--keep-logs DIR` keeps every process's log (MinIO, PostgreSQL, mc, each service).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import httpx
from minio import Minio
from minio.deleteobjects import DeleteObject
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.download.settings import DownloadSettings
from modelserve.testbed.gobuild import binary
from modelserve.testbed.measuring import cpu_seconds, machine_busy, proc_status, revision
from modelserve.testbed.objectstores import (
    PLATFORM_BUCKET,
    UPSTREAM_BUCKET,
    MinioServer,
    mc_env,
    start_minio,
)
from modelserve.testbed.platform import start_service
from modelserve.testbed.postgres import start_postgres
from modelserve.testbed.processes import log_tail

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-of-at-least-thirty-two-bytes"
MIB = 1 << 20
POLL_INTERVAL = 0.2
SAMPLE_INTERVAL = 0.05
GNU_TIME = Path("/usr/bin/time")
GNU_TIME_PEAK = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
CHUNK = 8 * MIB  # what the generator hands out per read
UPLOAD_PART = 32 * MIB  # parts of the uploads that create the sources
# Disk: every byte upstream once, then in the platform store by mc and by the service.
COPIES_ON_DISK = 3
DISK_MARGIN = 1 << 30


# --- the sources ----------------------------------------------------------------------------


class RandomStream:
    """`size` pseudo-random bytes from a seed, read in chunks; their SHA-256 as they go.
    Only `read` is there: all that `Minio.put_object` calls."""

    def __init__(self, size: int, seed: int) -> None:
        self._left = size
        self._random = random.Random(seed)
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        wanted = self._left if size < 0 else min(size, self._left)
        data = self._random.randbytes(min(wanted, CHUNK))
        self.digest.update(data)
        self._left -= len(data)
        return data


@dataclass(frozen=True)
class Case:
    """One source upstream: an object (`key`) or a folder (`prefix`)."""

    name: str
    size: int  # bytes, the manifest included
    files: int  # the manifest included
    key: str | None = None
    prefix: str | None = None
    sha256: str | None = None  # of the single object

    def body(self, model_id: str) -> dict[str, Any]:
        """What POST /downloads gets."""
        body: dict[str, Any] = {"bucket": UPSTREAM_BUCKET, "model_id": model_id}
        if self.key is not None:
            return {**body, "key": self.key, "sha256": self.sha256}
        return {**body, "prefix": self.prefix}

    def mc_args(self, destination: str) -> list[str]:
        if self.key is not None:
            name = self.key.rsplit("/", 1)[-1]
            return ["cp", "--quiet", f"up/{UPSTREAM_BUCKET}/{self.key}", f"{destination}{name}"]
        return ["cp", "--recursive", "--quiet", f"up/{UPSTREAM_BUCKET}/{self.prefix}", destination]


def put_random(client: Minio, key: str, size: int, seed: int) -> str:
    """Stream `size` bytes to `key` upstream; their SHA-256."""
    stream = RandomStream(size, seed)
    client.put_object(UPSTREAM_BUCKET, key, cast(BinaryIO, stream), size, part_size=UPLOAD_PART)
    return stream.digest.hexdigest()


def create_sources(store: MinioServer, options: argparse.Namespace) -> list[Case]:
    client = store.client()
    began = time.monotonic()
    cases = []
    for name, mib, seed in (("large", options.size_mb, 1), ("small", options.small_mb, 2)):
        key = f"single/{name}.gguf"
        digest = put_random(client, key, mib * MIB, seed)
        cases.append(Case(name, mib * MIB, 1, key=key, sha256=digest))
    prefix = "folder/"
    listing = []
    for index in range(options.files):
        path = f"model-{index + 1:05d}-of-{options.files:05d}.safetensors"
        size = options.file_mb * MIB
        digest = put_random(client, prefix + path, size, 1000 + index)
        listing.append({"path": path, "size": size, "sha256": digest})
    manifest = json.dumps({"name": "bench-folder", "files": listing}, indent=1).encode()
    client.put_object(
        UPSTREAM_BUCKET, prefix + "manifest.json", io.BytesIO(manifest), len(manifest)
    )
    total = sum(int(entry["size"]) for entry in listing) + len(manifest)
    cases.append(Case("folder", total, options.files + 1, prefix=prefix))
    seconds = time.monotonic() - began
    written = sum(case.size for case in cases)
    print(f"  sources written upstream in {seconds:.1f} s ({written / MIB / seconds:.0f} MiB/s)")
    return cases


def planned_bytes(options: argparse.Namespace) -> int:
    return int(options.size_mb + options.small_mb + options.files * options.file_mb) * MIB


def check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        sys.exit(
            f"download_throughput: {needed / 2**30:.1f} GiB of disk needed under {folder}"
            f" ({COPIES_ON_DISK} copies of the data and a margin), {free / 2**30:.1f} GiB free:"
            " ask for smaller sizes or point TMPDIR at a larger disk"
        )


def remove_prefix(client: Minio, bucket: str, prefix: str) -> None:
    names = [
        DeleteObject(item.object_name)
        for item in client.list_objects(bucket, prefix=prefix, recursive=True)
    ]
    for error in client.remove_objects(bucket, names):  # lazy: nothing happens unread
        raise RuntimeError(f"{prefix} not removed from {bucket}: {error}")


def stored_bytes(client: Minio, bucket: str, prefix: str) -> int:
    return sum(
        int(item.size or 0) for item in client.list_objects(bucket, prefix=prefix, recursive=True)
    )


# --- processes ------------------------------------------------------------------------------


@dataclass
class Phase:
    """One copy, by mc or by the service, and what it cost."""

    seconds: float = 0.0
    wall: float = 0.0  # over which the CPU figures were taken
    peak_rss_kib: int = 0
    cpu: float = 0.0  # of mc, or of the service
    minio_cpu: float = 0.0  # of both MinIO servers
    machine_cpu: float = 0.0  # of every process on the machine


class Meter:
    """CPU of MinIO and of the whole machine between `start` and `stop`."""

    def __init__(self, minio_pids: list[int]) -> None:
        self._minio = minio_pids
        self._before = (0.0, 0.0)

    def start(self) -> None:
        self._before = (cpu_seconds(self._minio), machine_busy())

    def stop(self, phase: Phase) -> None:
        phase.minio_cpu = cpu_seconds(self._minio) - self._before[0]
        phase.machine_cpu = machine_busy() - self._before[1]


class PeakMemory:
    """VmHWM of one process read every SAMPLE_INTERVAL in a thread, where GNU time is
    missing: it misses what the process adds in its last interval."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak_kib = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stopping.set()
        self._thread.join(timeout=2)
        return self.peak_kib

    def _run(self) -> None:
        while True:
            self.peak_kib = max(self.peak_kib, proc_status(self._pid).get("VmHWM", 0))
            if self._stopping.wait(SAMPLE_INTERVAL):
                return


def run_mc(mc: Path, args: list[str], env: dict[str, str], log: Path, meter: Meter) -> Phase:
    """Run mc to its end. Its CPU comes from wait4. Its peak RSS does not: the child
    Popen forks (with vfork) starts as this process's memory, which its rusage keeps
    after the exec; GNU time's report, or VmHWM (the new program's alone), is mc's."""
    phase = Phase()
    report = log.with_name("mc-time.txt")
    argv = [str(mc), *args]
    if GNU_TIME.exists():
        argv = [str(GNU_TIME), "--verbose", "--output", str(report), *argv]
    with log.open("ab") as out:
        out.write(f"$ mc {shlex.join(args)}\n".encode())
        out.flush()
        meter.start()
        began = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,  # GNU time and mc in a group of their own, ended together
        )
        sampler = None if GNU_TIME.exists() else PeakMemory(process.pid)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        phase.seconds = phase.wall = time.perf_counter() - began
        meter.stop(phase)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(
            f"mc {shlex.join(args)} failed ({process.returncode}); log {log}:\n{log_tail(log)}"
        )
    phase.cpu = usage.ru_utime + usage.ru_stime  # GNU time's own is next to nothing
    if sampler is not None:
        phase.peak_rss_kib = sampler.stop()
    else:
        found = GNU_TIME_PEAK.search(report.read_text())
        phase.peak_rss_kib = int(found.group(1)) if found else 0
    return phase


# --- the service ----------------------------------------------------------------------------


@dataclass
class ServiceRun:
    phase: Phase
    status: dict[str, Any]
    record: dict[str, Any]
    polled_seconds: float  # POST to the first poll that saw it ready
    states: dict[str, float]  # first poll that saw each state, from the POST
    rss_start_kib: int
    rss_end_kib: int
    log: Path

    def warnings(self) -> Counter[str]:
        """WARNING and ERROR lines of the service's log, timestamps cut, and tracebacks."""
        found: Counter[str] = Counter()
        for line in self.log.read_text(errors="replace").splitlines():
            for level in (" WARNING ", " ERROR ", " CRITICAL "):
                if level in line:
                    found[level.strip() + " " + line.split(level, 1)[1][:160]] += 1
            if line.startswith("Traceback"):
                found["Traceback"] += 1
        return found


def service_env(
    database: str, upstream: MinioServer, store: MinioServer, options: argparse.Namespace, tag: str
) -> dict[str, str]:
    return {
        "JWT_SECRET": SECRET,
        "DOWNLOAD_DATABASE_URL": database,
        "DOWNLOAD_UPSTREAM_ENDPOINT": upstream.endpoint,
        "DOWNLOAD_UPSTREAM_ACCESS_KEY": upstream.access_key,
        "DOWNLOAD_UPSTREAM_SECRET_KEY": upstream.secret_key,
        "DOWNLOAD_UPSTREAM_BUCKETS": UPSTREAM_BUCKET,
        "DOWNLOAD_PLATFORM_ENDPOINT": store.endpoint,
        "DOWNLOAD_PLATFORM_ACCESS_KEY": store.access_key,
        "DOWNLOAD_PLATFORM_SECRET_KEY": store.secret_key,
        "DOWNLOAD_PLATFORM_BUCKET": PLATFORM_BUCKET,
        "DOWNLOAD_PART_SIZE": str(options.part_mb * MIB),
        "DOWNLOAD_PARALLEL_PARTS": str(options.parallel_parts),
        "DOWNLOAD_WORKER_ID": f"bench-{tag}",
    }


def follow(
    client: httpx.Client, model_id: str, timeout: float
) -> tuple[dict[str, Any], dict[str, float], float]:
    """Poll the job until ready: its status, when each state was first seen, the time."""
    began = time.perf_counter()
    states: dict[str, float] = {}
    while True:
        response = client.get(f"/status/{model_id}")
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        elapsed = time.perf_counter() - began
        states.setdefault(job["state"], elapsed)
        if job["state"] == "ready":
            return job, states, elapsed
        if job["state"] in ("failed", "cancelled"):
            raise RuntimeError(f"download {model_id} {job['state']}: {job['error']}")
        if elapsed > timeout:
            raise TimeoutError(f"download {model_id} not ready after {timeout:.0f} s: {job}")
        time.sleep(POLL_INTERVAL)


def job_seconds(
    job: dict[str, Any], since: str = "created_at", until: str = "finished_at"
) -> float:
    """Between two of the job's timestamps, by the database's clock."""
    began = dt.datetime.fromisoformat(job[since])
    ended = dt.datetime.fromisoformat(job[until])
    return (ended - began).total_seconds()


def run_service(
    env: dict[str, str], logs: Path, case: Case, model_id: str, meter: Meter, timeout: float
) -> ServiceRun:
    service = start_service("download", logs, env)
    try:
        pid = service.process.pid or 0
        token = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET))).sign(
            "bench", roles=("admin",)
        )
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=service.url, headers=headers, timeout=30) as client:
            rss_start = proc_status(pid).get("VmRSS", 0)
            cpu_before = cpu_seconds([pid])
            meter.start()
            answer = client.post("/downloads", json=case.body(model_id))
            if answer.status_code != 202:
                raise RuntimeError(f"POST /downloads answered {answer.status_code}: {answer.text}")
            job, states, polled = follow(client, model_id, timeout)
            phase = Phase(job_seconds(job), wall=polled, cpu=cpu_seconds([pid]) - cpu_before)
            meter.stop(phase)
            figures = proc_status(pid)
            phase.peak_rss_kib = figures.get("VmHWM", 0)
            record = client.get(f"/models/{model_id}").raise_for_status().json()
            return ServiceRun(
                phase=phase,
                status=job,
                record=record,
                polled_seconds=polled,
                states=states,
                rss_start_kib=rss_start,
                rss_end_kib=figures.get("VmRSS", 0),
                log=service.process.log_path,
            )
    finally:
        service.stop()


# --- one run of one case --------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    repeat: int
    mc: Phase
    service: ServiceRun


def measure(
    case: Case,
    repeat: int,
    *,
    mc: Path,
    mc_environment: dict[str, str],
    upstream: MinioServer,
    store: MinioServer,
    database: str,
    folder: Path,
    options: argparse.Namespace,
    meter: Meter,
) -> Result:
    tag = f"{case.name}-{repeat}"
    mc_prefix, model_id = f"mc/{tag}/", f"bench-{tag}"
    platform_client = store.client()

    def by_mc() -> Phase:
        phase = run_mc(
            mc,
            case.mc_args(f"platform/{PLATFORM_BUCKET}/{mc_prefix}"),
            mc_environment,
            folder / "logs" / "mc.log",
            meter,
        )
        copied = stored_bytes(platform_client, PLATFORM_BUCKET, mc_prefix)
        if copied != case.size:
            raise RuntimeError(f"mc copied {copied} bytes of {case.name}, not {case.size}")
        return phase

    def by_service() -> ServiceRun:
        env = service_env(database, upstream, store, options, tag)
        run = run_service(env, folder / "logs", case, model_id, meter, options.timeout)
        copied = (run.record["size"], len(run.record["files"]))
        if copied != (case.size, case.files):
            raise RuntimeError(f"the service copied (bytes, files) {copied} of {case.name}")
        return run

    if repeat % 2:
        mc_phase, service_run = by_mc(), by_service()
    else:
        service_run = by_service()
        mc_phase = by_mc()
    for prefix in (mc_prefix, f"models/{model_id}/"):
        remove_prefix(platform_client, PLATFORM_BUCKET, prefix)
    result = Result(case, repeat, mc_phase, service_run)
    report_run(result)
    return result


# --- printing -------------------------------------------------------------------------------


def rate(size: int, seconds: float) -> float:
    return size / MIB / seconds if seconds > 0 else float("nan")


def busy(phase: Phase) -> str:
    cpus = len(os.sched_getaffinity(0))
    wall = max(phase.wall, 1e-9)
    return (
        f"CPU {phase.cpu:.1f} s, MinIO {phase.minio_cpu:.1f} s,"
        f" machine busy {100 * phase.machine_cpu / wall / cpus:.0f}% of {cpus} CPUs"
    )


def report_run(result: Result) -> None:
    run, case = result.service, result.case
    states = ", ".join(f"{state} {at:.2f} s" for state, at in run.states.items())
    first = "mc first" if result.repeat % 2 else "service first"
    print(f"  {case.name} #{result.repeat} ({first}):", flush=True)
    print(f"    mc:      {result.mc.seconds:7.2f} s, {busy(result.mc)}")
    print(f"    service: {run.phase.seconds:7.2f} s (job's clock), {busy(run.phase)}")
    print(
        f"             claimed {job_seconds(run.status, until='started_at'):.2f} s after it was"
        f" queued; POST to ready seen {run.polled_seconds:.2f} s; states first seen: {states};"
        f" its own rate {(run.status['rate_bytes_per_second'] or 0) / MIB:.0f} MiB/s"
    )
    print(
        f"             RSS {run.rss_start_kib / 1024:.0f} MiB before the POST,"
        f" {run.rss_end_kib / 1024:.0f} MiB once ready, peak (VmHWM) "
        f"{run.phase.peak_rss_kib / 1024:.0f} MiB; verified {run.record['verified']},"
        f" {run.status['files_total']} file(s)"
    )
    for message, count in run.warnings().most_common(5):
        print(f"             log {run.log.name}: {count} x {message}")


ROW = "  {:<9} {:>6} {:>7} {:>8} {:>7} {:>9} {:>6} {:>7} {:>6} {:>7} {:>6}"


def report_table(results: list[Result]) -> None:
    print()
    print(
        ROW.format(
            "case",
            "MiB",
            "mc s",
            "mc MiB/s",
            "svc s",
            "svc MiB/s",
            "svc/mc",
            "svc RSS",
            "mc RSS",
            "svc CPU",
            "mc CPU",
        )
    )
    for result in results:
        case, mc, service = result.case, result.mc, result.service.phase
        print(
            ROW.format(
                f"{case.name}#{result.repeat}",
                f"{case.size / MIB:.0f}",
                f"{mc.seconds:.2f}",
                f"{rate(case.size, mc.seconds):.0f}",
                f"{service.seconds:.2f}",
                f"{rate(case.size, service.seconds):.0f}",
                f"{mc.seconds / service.seconds:.2f}",
                f"{service.peak_rss_kib / 1024:.0f}",
                f"{mc.peak_rss_kib / 1024:.0f}",
                f"{service.cpu:.1f}",
                f"{mc.cpu:.1f}",
            )
        )
    print("  (RSS: peak, MiB; CPU: seconds; svc/mc: the service's throughput over mc's)")


def report_targets(results: list[Result]) -> None:
    by_case: dict[str, list[Result]] = {}
    for result in results:
        by_case.setdefault(result.case.name, []).append(result)
    print("\n  targets (medians over the repetitions):")
    for name, runs in by_case.items():
        ratio = statistics.median(r.mc.seconds / r.service.phase.seconds for r in runs)
        verdict = "met" if ratio >= 0.9 else "NOT met"
        print(f"    {name:<7} throughput service/mc {ratio:.2f} (target >= 0.90: {verdict})")
    peaks = {
        name: statistics.median(r.service.phase.peak_rss_kib / 1024 for r in runs)
        for name, runs in by_case.items()
    }
    if "large" in peaks and "small" in peaks:
        sizes = {r.case.name: r.case.size / MIB for r in results}
        print(
            f"    service peak RSS: {peaks['large']:.0f} MiB for {sizes['large']:.0f} MiB,"
            f" {peaks['small']:.0f} MiB for {sizes['small']:.0f} MiB"
            f" ({peaks['large'] - peaks['small']:+.0f} MiB; target: flat in the object's size)"
        )


def print_header(options: argparse.Namespace, folder: Path) -> None:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    jobs = DownloadSettings.model_fields["jobs"].default
    print(
        f"download_throughput: objects of {options.size_mb} and {options.small_mb} MiB,"
        f" a folder of {options.files} x {options.file_mb} MiB; {options.repeat} repetition(s)"
    )
    print(f"  machine: {len(os.sched_getaffinity(0))} CPUs (nproc), {cpu_model}")
    print(f"  Python {platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"  load average at start: {load} (figures are noisy on a shared machine)")
    print(
        f"  service: part size {options.part_mb} MiB, {options.parallel_parts} parallel parts,"
        f" {jobs} jobs (one runs at a time here); mc: its defaults"
    )
    how = "GNU time's report" if GNU_TIME.exists() else f"VmHWM every {SAMPLE_INTERVAL} s"
    print(f"  peak RSS: the service's VmHWM (a fresh process per run), mc's from {how}")
    print(f"  data: on disk under {folder}; MinIO and PostgreSQL on loopback")
    print(f"  code: {revision(ROOT)}")
    print(f"  reproduce: .venv/bin/python bench/download_throughput.py {shlex.join(sys.argv[1:])}")
    print(flush=True)


# --- the whole benchmark --------------------------------------------------------------------


def parse_options() -> argparse.Namespace:
    defaults = DownloadSettings.model_fields
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=2048, help="the large object, MiB")
    parser.add_argument("--small-mb", type=int, default=256, help="the small object, MiB")
    parser.add_argument("--files", type=int, default=200, help="files in the folder")
    parser.add_argument("--file-mb", type=int, default=10, help="size of each, MiB")
    parser.add_argument(
        "--part-mb", type=int, default=defaults["part_size"].default // MIB, help="the service's"
    )
    parser.add_argument(
        "--parallel-parts",
        type=int,
        default=defaults["parallel_parts"].default,
        help="the service's",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per download, seconds")
    parser.add_argument("--keep-logs", type=Path, help="copy every process's log here")
    options = parser.parse_args()
    if options.part_mb < 5:
        parser.error("--part-mb: S3 parts are 5 MiB at least")
    if min(options.size_mb, options.small_mb, options.files, options.file_mb, options.repeat) < 1:
        parser.error("sizes, --files and --repeat are 1 or more")
    return options


def run_all(folder: Path, stack: contextlib.ExitStack, options: argparse.Namespace) -> list[Result]:
    began = time.monotonic()
    postgres = start_postgres(log_folder=folder / "logs")
    stack.callback(postgres.stop)
    database = postgres.create_database("download_bench")
    upstream = start_minio("upstream", folder / "minio", bucket=UPSTREAM_BUCKET)
    stack.callback(upstream.stop)
    store = start_minio("platform", folder / "minio", bucket=PLATFORM_BUCKET)
    stack.callback(store.stop)
    mc = binary("mc")
    home = folder / "home"
    home.mkdir()
    mc_environment = {
        **mc_env(("up", upstream), ("platform", store), config_dir=folder / "mc"),
        "HOME": str(home),
    }
    print(f"  PostgreSQL and two MinIO servers ready in {time.monotonic() - began:.1f} s")
    cases = create_sources(upstream, options)
    meter = Meter([p for p in (upstream.process.pid, store.process.pid) if p])
    print(flush=True)
    results = []
    for repeat in range(1, options.repeat + 1):
        for case in cases:
            results.append(
                measure(
                    case,
                    repeat,
                    mc=mc,
                    mc_environment=mc_environment,
                    upstream=upstream,
                    store=store,
                    database=database,
                    folder=folder,
                    options=options,
                    meter=meter,
                )
            )
    return results


def keep_logs(folder: Path, destination: Path) -> None:
    """Every log of the run (MinIO keeps its own under minio/logs), flattened."""
    destination.mkdir(parents=True, exist_ok=True)
    for log in folder.rglob("*.log"):
        shutil.copy2(log, destination / log.name)
    print(f"  logs kept in {destination}", flush=True)


def main() -> None:
    options = parse_options()
    # A `kill` ends the run through the finally blocks: no server left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    root = Path(tempfile.gettempdir())
    check_space(root, COPIES_ON_DISK * planned_bytes(options) + DISK_MARGIN)
    with tempfile.TemporaryDirectory(prefix="modelserve-bench-", dir=root) as tmp:
        folder = Path(tmp)
        print_header(options, folder)
        with contextlib.ExitStack() as stack:
            if options.keep_logs:
                stack.callback(keep_logs, folder, options.keep_logs)
            results = run_all(folder, stack, options)
        report_table(results)
        report_targets(results)


if __name__ == "__main__":
    main()
