"""How the operator keeps up with many ModelServes at once, and what it holds in memory.

    .venv/bin/python bench/operator_scale.py 100 1000

Starts the test bed's control plane (etcd, kube-apiserver, controller-manager,
scheduler, KWOK) with the ModelServe and Traefik CRDs, then for each N on the
command line, in a fresh namespace and with a fresh `modelserve-operator` process:

- creates N llama.cpp-on-CPU ModelServes (1 replica, 10m CPU, 16Mi) from a pool of
  client threads, noting the monotonic time at which each create call returned;
- watches Deployments and ModelServes from this process, noting when each Deployment
  is first seen, when it first reports its replicas ready, and when each ModelServe
  first reports `phase: Ready`: the gaps split the time between the operator (create to
  Deployment, Deployment ready to ModelServe Ready) and the test bed's controllers;
- samples the operator's VmRSS (and reads VmHWM, the kernel's own peak) every 0.25 s,
  the CPU time of the operator and of each control-plane process, and the API server's
  request counters (`/metrics`), to see which calls the run cost.

Watches rather than polling: they give each object's time to within the event's
delivery, and a list of 1,000 objects every second would compete for the same CPUs.
One list at the end is the authority for how many ModelServes are Ready. Nothing
asserts on time: the figures are printed, with the machine and the commit they come from.

One stand-in for what the test bed lacks, said in the output: more fake nodes
(`build_node` caps each at 110 pods).
`--timeout` bounds each size (300 s), `--setting OPERATOR_X=v` passes settings (or any
environment variable) to the operator, `--keep-logs DIR` keeps every process's log.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from modelserve.testbed.kube import FakeNode, KubeCluster, start_cluster
from modelserve.testbed.measuring import (
    cpu_seconds,
    machine_busy,
    percentile,
    proc_status,
    revision,
)
from modelserve.testbed.objectstores import MinioServer, start_minio
from modelserve.testbed.platform import install_crds, start_operator
from modelserve.testbed.processes import ManagedProcess, descendants
from modelserve.testbed.seeding import tag_as_recorded

ROOT = Path(__file__).resolve().parents[1]
MODELSERVES = ("llm.modelserve.io", "v1alpha1", "modelserves")
DEPLOYMENTS = ("apps", "v1", "deployments")
# build_node caps every fake node at 110 pods: room for 1,000 pods means more nodes.
PODS_PER_NODE = 100
BENCH_BUCKET, BENCH_MODEL = "bench-models", "tiny.gguf"
# Client threads creating ModelServes: enough to outpace the operator on a small machine.
CREATE_THREADS = 16
SAMPLE_INTERVAL = 0.25
PROGRESS_INTERVAL = 10.0
# What the watches note, per object: the keys of Run.seen.
DEPLOYMENT_SEEN, DEPLOYMENT_READY, MS_READY = "deployment", "deployment ready", "ready"
MACHINE, CPU_WAIT = "whole machine", "cpu pressure"
KLOG_ERROR = re.compile(r"E\d{4} ")
KLOG_WARNING = re.compile(r"W\d{4} ")
ERROR_MARKS = re.compile(r'\[ERROR|"level":"ERROR"')
WARNING_MARKS = re.compile(r'\[WARNING|"level":"WARN"')
# Lines worth counting even at info level: a throttled client, fake nodes missing heartbeats
# (the node controller then marks their pods not ready).
NOTABLE = ("client-side throttling", "all Nodes are not-Ready")
# `[time] logger [LEVEL   ] ` (kopf) or `E1123 19:52:07.123456  42 file.go:12] ` (klog).
LOG_PREFIX = re.compile(r"^\[[^]]*\] \S+\s+\[[A-Z ]+\] |^[EWI]\d{4} \S+\s+\d+ [^]]+\] ")
# The API server's latency histogram leaves out watches; its count is every other request.
REQUEST_METRIC = re.compile(r"^apiserver_request_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$")
METRIC_LABEL = re.compile(r'(\w+)="([^"]*)"')

Obj = dict[str, Any]
Check = Callable[[Obj], bool]


# --- what the cluster and the operator get ------------------------------------------------


def cpu_nodes(largest: int) -> tuple[FakeNode, ...]:
    """CPU-only fake nodes with room for `largest` pods (and some to spare)."""
    count = largest // PODS_PER_NODE + 1
    return tuple(FakeNode(f"cpu-{i}", cpu="64", memory="256Gi") for i in range(count))


def build_modelserve(index: int) -> Obj:
    return {
        "apiVersion": f"{MODELSERVES[0]}/{MODELSERVES[1]}",
        "kind": "ModelServe",
        "metadata": {"name": f"ms-{index:05d}"},
        "spec": {
            "runtime": "llamacpp",
            "model": {"uri": f"s3://{BENCH_BUCKET}/{BENCH_MODEL}", "format": "gguf"},
            "replicas": 1,
            "resources": {"cpu": "10m", "memory": "16Mi"},
        },
    }


def api_client(kubeconfig: Path, connections: int) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    # One pooled connection per thread: urllib3 would otherwise open and drop extra ones.
    configuration.connection_pool_maxsize = connections
    return k8s.ApiClient(configuration)


# --- watching -------------------------------------------------------------------------------


class Watcher:
    """Notes, for each check, when each object of one kind first passed it (in a thread)."""

    def __init__(
        self,
        api: k8s.ApiClient,
        resource: tuple[str, str, str],
        namespace: str,
        checks: Mapping[str, Check],
    ) -> None:
        # The custom-objects API reads any kind as plain dicts: no model classes to build.
        self._custom = k8s.CustomObjectsApi(api)
        self._args = (*resource[:2], namespace, resource[2])
        self._checks = dict(checks)
        self._first: dict[str, dict[str, float]] = {mark: {} for mark in checks}
        self._watch = watch.Watch()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: str | None = None
        self.relapses: Counter[str] = Counter()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._watch.stop()
        self._thread.join(timeout=2)

    def times(self, mark: str) -> dict[str, float]:
        with self._lock:
            return dict(self._first[mark])

    def _run(self) -> None:
        try:
            listing = self._custom.list_namespaced_custom_object(*self._args)
            version = listing["metadata"]["resourceVersion"]
            stream = self._watch.stream(
                self._custom.list_namespaced_custom_object, *self._args, resource_version=version
            )
            for event in stream:
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._note(event["object"], time.monotonic())
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            if not self._stopping.is_set():
                self.error = f"{type(error).__name__}: {error}"

    def _note(self, obj: Obj, now: float) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            for mark, check in self._checks.items():
                passed = check(obj)
                if name not in self._first[mark] and passed:
                    self._first[mark][name] = now
                elif name in self._first[mark] and not passed:
                    self.relapses[mark] += 1  # passed once, fails again: a flapping status


def deployment_ready(obj: Obj) -> bool:
    wanted = (obj.get("spec") or {}).get("replicas", 1)
    return bool((obj.get("status") or {}).get("readyReplicas", 0) >= wanted)


def modelserve_ready(obj: Obj) -> bool:
    return bool((obj.get("status") or {}).get("phase") == "Ready")


# --- processes and the API server ------------------------------------------------------------


def tree_cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of the process and its children, from /proc."""
    return cpu_seconds(descendants([pid])) if pid else 0.0


def cpu_snapshot(processes: Iterable[ManagedProcess]) -> dict[str, float]:
    figures = {process.name: tree_cpu_seconds(process.pid) for process in processes}
    figures["this benchmark"] = sum(os.times()[:2])  # its client threads share the CPUs
    # The whole machine, other people's work included: busy = all but idle and iowait.
    figures[MACHINE] = machine_busy()
    figures[CPU_WAIT] = cpu_pressure()
    return figures


def cpu_pressure() -> float:
    """Seconds in which some runnable task waited for a CPU (PSI), 0 where not available."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (FileNotFoundError, OSError):
        return 0.0
    return int(some.rsplit("total=", 1)[1]) / 1e6


def open_sockets(pid: int) -> int:
    """Sockets the process holds open: mostly its connections to the API server."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return sum(_link(fd).startswith("socket:") for fd in fds)


def _link(path: Path) -> str:
    try:
        return str(path.readlink())
    except FileNotFoundError:
        return ""  # closed in the meantime


class MemorySampler:
    """Peak resident memory and open sockets of a process and its children, in a thread."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak_rss_kib = 0
        self.peak_hwm_kib = 0
        self.peak_sockets = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stopping.wait(SAMPLE_INTERVAL):
            pids = descendants([self._pid])
            figures = [proc_status(pid) for pid in pids]
            rss = sum(f.get("VmRSS", 0) for f in figures)
            hwm = sum(f.get("VmHWM", 0) for f in figures)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_hwm_kib = max(self.peak_hwm_kib, hwm)
            self.peak_sockets = max(self.peak_sockets, sum(map(open_sockets, pids)))


def api_requests(cluster: KubeCluster) -> dict[str, tuple[float, float]]:
    """Requests the API server has served, by verb and resource: (count, seconds)."""
    figures: dict[str, tuple[float, float]] = {}
    for line in cluster.kubectl("get", "--raw", "/metrics").splitlines():
        match = REQUEST_METRIC.match(line)
        if match is None:
            continue
        labels = dict(METRIC_LABEL.findall(match.group(2)))
        group = f"{labels['group']}/" if labels.get("group") else ""
        sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
        key = f"{labels.get('verb')} {group}{labels.get('resource')}{sub}"
        count, seconds = figures.get(key, (0.0, 0.0))
        value = float(match.group(3))
        figures[key] = (count + value, seconds) if match.group(1) == "count" else (count, value)
    return figures


def requests_since(
    before: Mapping[str, tuple[float, float]], after: Mapping[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    zero = (0.0, 0.0)
    return {
        key: (count - before.get(key, zero)[0], seconds - before.get(key, zero)[1])
        for key, (count, seconds) in after.items()
        if count > before.get(key, zero)[0]
    }


def log_offsets(processes: Iterable[ManagedProcess]) -> dict[str, int]:
    return {p.name: p.log_path.stat().st_size if p.log_path.exists() else 0 for p in processes}


def log_lines_since(process: ManagedProcess, offset: int) -> list[str]:
    with process.log_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace").splitlines()


# --- one size -------------------------------------------------------------------------------


@dataclass
class Run:
    """What one size's run saw; times are this process's monotonic clock."""

    n: int
    namespace: str
    settings: dict[str, str]
    code: str
    began: float = 0.0
    ended: float = 0.0
    created_at: dict[str, float] = field(default_factory=dict)
    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    phases: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    requests: dict[str, tuple[float, float]] = field(default_factory=dict)
    peak_rss_kib: int = 0
    peak_hwm_kib: int = 0
    peak_sockets: int = 0
    relapses: int = 0
    logs: dict[str, list[str]] = field(default_factory=dict)
    watch_errors: list[str] = field(default_factory=list)


def create_all(api: k8s.ApiClient, namespace: str, n: int, workers: int) -> dict[str, float]:
    """Create the N ModelServes; the monotonic time at which each create call returned."""
    custom = k8s.CustomObjectsApi(api)

    def create(index: int) -> tuple[str, float]:
        body = build_modelserve(index)
        custom.create_namespaced_custom_object(*MODELSERVES[:2], namespace, MODELSERVES[2], body)
        return body["metadata"]["name"], time.monotonic()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(create, range(n)))


def wait_ready(run: Run, deployments: Watcher, modelserves: Watcher, timeout: float) -> None:
    deadline = run.began + timeout
    last_report = time.monotonic()
    while time.monotonic() < deadline and len(modelserves.times(MS_READY)) < run.n:
        time.sleep(0.5)
        if time.monotonic() - last_report >= PROGRESS_INTERVAL:
            last_report = time.monotonic()
            print(
                f"    t={last_report - run.began:6.1f} s"
                f"  deployments {len(deployments.times(DEPLOYMENT_SEEN))}"
                f"  deployments ready {len(deployments.times(DEPLOYMENT_READY))}"
                f"  ModelServes Ready {len(modelserves.times(MS_READY))} of {run.n}",
                flush=True,
            )


def final_phases(api: k8s.ApiClient, namespace: str) -> Counter[str]:
    listing = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
        *MODELSERVES[:2], namespace, MODELSERVES[2]
    )
    return Counter(
        (item.get("status") or {}).get("phase") or "(no status)" for item in listing["items"]
    )


def measure(
    cluster: KubeCluster, api: k8s.ApiClient, operator: ManagedProcess, run: Run, timeout: float
) -> None:
    deployments = Watcher(
        api,
        DEPLOYMENTS,
        run.namespace,
        {DEPLOYMENT_SEEN: lambda _: True, DEPLOYMENT_READY: deployment_ready},
    )
    modelserves = Watcher(api, MODELSERVES, run.namespace, {MS_READY: modelserve_ready})
    sampler = MemorySampler(operator.pid or 0)
    for started in (deployments, modelserves, sampler):
        started.start()
    time.sleep(1.0)  # let both watches connect before the first create
    processes = [*cluster.processes, operator]
    offsets, cpu_before, requests_before = (
        log_offsets(processes),
        cpu_snapshot(processes),
        api_requests(cluster),
    )
    try:
        run.began = time.monotonic()
        run.created_at = create_all(api, run.namespace, run.n, CREATE_THREADS)
        print(f"    created {run.n} in {time.monotonic() - run.began:.1f} s", flush=True)
        wait_ready(run, deployments, modelserves, timeout)
        run.ended = time.monotonic()
    finally:
        cpu_after = cpu_snapshot(processes)
        for stopped in (deployments, modelserves, sampler):
            stopped.stop()
    run.cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    run.requests = requests_since(requests_before, api_requests(cluster))
    run.seen = {
        DEPLOYMENT_SEEN: deployments.times(DEPLOYMENT_SEEN),
        DEPLOYMENT_READY: deployments.times(DEPLOYMENT_READY),
        MS_READY: modelserves.times(MS_READY),
    }
    run.peak_rss_kib, run.peak_hwm_kib = sampler.peak_rss_kib, sampler.peak_hwm_kib
    run.peak_sockets = sampler.peak_sockets
    run.logs = {p.name: log_lines_since(p, offsets.get(p.name, 0)) for p in processes}
    run.watch_errors = [w.error for w in (deployments, modelserves) if w.error]
    run.relapses = modelserves.relapses[MS_READY]
    run.phases = final_phases(api, run.namespace)


def store_settings(folder: Path) -> tuple[MinioServer, dict[str, str]]:
    """A platform store holding the ModelServes' model as a download leaves it (tagged with
    its digest): each reconcile reads its tags and signs a URL, as in a cluster."""
    store = start_minio("platform", folder / "minio", bucket=BENCH_BUCKET)
    data = b"GGUF bench model"
    digest = store.put(BENCH_BUCKET, BENCH_MODEL, data)
    tag_as_recorded(store.client(), BENCH_BUCKET, BENCH_MODEL, digest, "bench")
    return store, {
        "OPERATOR_MODEL_STORE_ENDPOINT": store.endpoint,
        "OPERATOR_MODEL_STORE_ACCESS_KEY": store.access_key,
        "OPERATOR_MODEL_STORE_SECRET_KEY": store.secret_key,
    }


def run_size(
    cluster: KubeCluster,
    api: k8s.ApiClient,
    folder: Path,
    n: int,
    options: argparse.Namespace,
    settings: dict[str, str],
) -> None:
    """One size in its own namespace, with an operator of its own; the namespace goes after."""
    overrides = dict(setting.split("=", 1) for setting in options.setting)
    run = Run(n, f"bench-{n}", overrides, revision(ROOT))
    core = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": run.namespace}})
    logs = folder / "logs" / f"n{n}"
    operator = start_operator(cluster.kubeconfig, logs, {**settings, **overrides})
    try:
        measure(cluster, api, operator.process, run, options.timeout)
        report(run)
    finally:
        # Stopped first: its retries against a terminating namespace are not what we measure.
        operator.stop()
        core.delete_namespace(run.namespace)
        gone = wait_namespace_gone(core, run.namespace, options.cleanup_timeout)
        print(f"    namespace deleted in {gone}\n", flush=True)


def wait_namespace_gone(core: k8s.CoreV1Api, namespace: str, timeout: float) -> str:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            core.read_namespace(namespace)
        except ApiException as error:
            if error.status == 404:
                return f"{time.monotonic() - began:.1f} s (garbage collection of its children)"
            raise
        time.sleep(1.0)
    return f"more than {timeout:.0f} s: still terminating, going on"


# --- printing -------------------------------------------------------------------------------


def gaps(start: Mapping[str, float], end: Mapping[str, float]) -> str:
    values = [end[name] - start[name] for name in end if name in start]
    if not values:
        return "none seen"
    return (
        f"p50 {percentile(values, 50):6.2f}  p99 {percentile(values, 99):6.2f}"
        f"  max {max(values):6.2f} s  ({len(values)})"
    )


def until_all(run: Run, seen: Mapping[str, float]) -> str:
    if len(seen) < run.n:
        return f"not reached: {len(seen)} of {run.n} after {run.ended - run.began:.1f} s"
    return f"{max(seen.values()) - run.began:6.1f} s"


def log_problems(lines: Sequence[str]) -> tuple[list[str], list[str]]:
    """Error and warning lines: kopf's `[ERROR   ]`, klog's `E1123 ...`, KWOK's JSON."""
    errors = [line for line in lines if KLOG_ERROR.match(line) or ERROR_MARKS.search(line)]
    warnings = [line for line in lines if KLOG_WARNING.match(line) or WARNING_MARKS.search(line)]
    return errors, warnings


def common_messages(lines: Sequence[str], top: int = 3) -> list[tuple[int, str]]:
    """The most frequent messages, with timestamps cut and numbers blurred to group them."""
    kinds = Counter(re.sub(r"\d+", "N", LOG_PREFIX.sub("", line))[:110] for line in lines)
    return [(count, text) for text, count in kinds.most_common(top)]


def report_times(run: Run) -> None:
    created_at, seen = run.created_at, run.seen
    created = max(created_at.values()) - run.began
    not_ready = run.n - run.phases.get("Ready", 0)
    print(
        f"    all {run.n} create calls returned after   {created:6.1f} s ({run.n / created:.0f}/s)"
    )
    print(f"    every Deployment exists after             {until_all(run, seen[DEPLOYMENT_SEEN])}")
    print(f"    every Deployment was once replica-ready   {until_all(run, seen[DEPLOYMENT_READY])}")
    print(f"    every ModelServe was once Ready           {until_all(run, seen[MS_READY])}")
    print(
        f"    ModelServes not Ready at the end: {not_ready} (phases listed then:"
        f" {dict(run.phases)}); Ready at some point: {len(seen[MS_READY])};"
        f" events of a ModelServe no longer Ready after it was: {run.relapses}"
    )
    print("    per object, between events as they reached this process (seconds):")
    stages = (
        ("create returned -> Deployment seen (operator)", created_at, seen[DEPLOYMENT_SEEN]),
        (
            "Deployment seen -> its replica ready (test bed)",
            seen[DEPLOYMENT_SEEN],
            seen[DEPLOYMENT_READY],
        ),
        ("Deployment ready -> ModelServe Ready (operator)", seen[DEPLOYMENT_READY], seen[MS_READY]),
        ("create returned -> ModelServe Ready (end to end)", created_at, seen[MS_READY]),
    )
    for label, start, end in stages:
        print(f"      {label:<50} {gaps(start, end)}")


def report_resources(run: Run) -> None:
    wall = max(run.ended - run.began, 1e-9)
    print(
        f"    operator memory: peak VmRSS {run.peak_rss_kib / 1024:.1f} MiB "
        f"(sampled every {SAMPLE_INTERVAL} s), peak VmHWM {run.peak_hwm_kib / 1024:.1f} MiB,"
        f" peak open sockets {run.peak_sockets}"
    )
    ours = {name: s for name, s in run.cpu.items() if name not in (MACHINE, CPU_WAIT)}
    usage = ", ".join(f"{name} {100 * s / wall:.0f}%" for name, s in sorted(ours.items()))
    print(f"    CPU over the {wall:.0f} s run, % of one core: {usage}")
    cpus = len(os.sched_getaffinity(0))
    machine, others = run.cpu.get(MACHINE, 0.0), run.cpu.get(MACHINE, 0.0) - sum(ours.values())
    print(
        f"    whole machine busy {100 * machine / wall / cpus:.0f}% of its {cpus} CPUs;"
        f" processes outside this benchmark used {100 * others / wall:.0f}% of one core;"
        f" some task waited for a CPU {100 * run.cpu.get(CPU_WAIT, 0.0) / wall:.0f}% of the time"
    )
    total = sum(count for count, _ in run.requests.values())
    print(
        f"    API server requests (watches aside): {total:.0f}, {total / run.n:.1f} per ModelServe"
    )
    busiest = sorted(run.requests.items(), key=lambda item: -item[1][0])[:12]
    for key, (count, seconds) in busiest:
        mean = 1000 * seconds / count if count else 0.0
        print(f"      {key:<44} {count / run.n:6.2f} per ModelServe, mean {mean:5.0f} ms")


def report_logs(run: Run) -> None:
    for name, lines in sorted(run.logs.items()):
        errors, warnings = log_problems(lines)
        notable = "".join(
            f", {count} {what!r}"
            for what in NOTABLE
            if (count := sum(what in line for line in lines))
        )
        print(f"    log {name}: {len(errors)} errors, {len(warnings)} warnings{notable}")
        for count, text in common_messages(errors + warnings):
            print(f"      {count:5d} x {text}")
    for error in run.watch_errors:
        print(f"    a watch of this benchmark failed: {error}")


def report(run: Run) -> None:
    settings = " ".join(f"{k}={v}" for k, v in run.settings.items()) or "defaults"
    print(f"  N = {run.n}: namespace {run.namespace}, a fresh operator, settings: {settings}")
    print(f"    operator code when it started: {run.code}")
    report_times(run)
    report_resources(run)
    report_logs(run)


def print_header(sizes: Sequence[int], nodes: Sequence[FakeNode]) -> None:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"operator_scale: N = {', '.join(map(str, sizes))}")
    print(f"  machine: {len(os.sched_getaffinity(0))} CPUs (nproc), {cpu_model}")
    print(f"  Python {platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"  load average at start: {load} (figures are noisy on a shared machine)")
    print(
        f"  nodes: {len(nodes)} KWOK CPU node(s) of 64 CPU / 256Gi: build_node caps each at"
        " 110 pods, so the benchmark adds nodes rather than raising the cap"
    )
    print("  times: monotonic clock of this process; events are timed when they arrive here")
    print(f"  code: {revision(ROOT)}")
    print(f"  reproduce: .venv/bin/python bench/operator_scale.py {shlex.join(sys.argv[1:])}")
    print(flush=True)


# --- the whole benchmark --------------------------------------------------------------------


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 1000])
    parser.add_argument("--timeout", type=float, default=300.0, help="per size, seconds")
    parser.add_argument("--cleanup-timeout", type=float, default=300.0)
    parser.add_argument(
        "--setting", action="append", default=[], help="OPERATOR_X=value for the operator"
    )
    parser.add_argument("--keep-logs", type=Path, help="copy every process's log here")
    return parser.parse_args()


def main() -> None:
    options = parse_options()
    # A `kill` ends the run through the finally blocks: no control plane left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    nodes = cpu_nodes(max(options.sizes))
    print_header(options.sizes, nodes)
    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as tmp:
        folder = Path(tmp)
        began = time.monotonic()
        # Thousands of servers: their pods stay simulated (KWOK), not run.
        cluster = start_cluster(folder / "kube", nodes=nodes, run_pods=False)
        api = api_client(cluster.kubeconfig, connections=CREATE_THREADS + 8)  # + watches
        store, settings = store_settings(folder)
        try:
            install_crds(cluster)
            print(f"  control plane and CRDs ready in {time.monotonic() - began:.1f} s\n")
            for n in options.sizes:
                run_size(cluster, api, folder, n, options, settings)
        finally:
            api.close()
            store.stop()
            cluster.stop()
            if options.keep_logs:
                for name, logs in (
                    ("kube", folder / "kube" / "logs"),
                    ("operator", folder / "logs"),
                ):
                    if logs.exists():
                        shutil.copytree(logs, options.keep_logs / name, dirs_exist_ok=True)


if __name__ == "__main__":
    main()
