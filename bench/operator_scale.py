"""How the operator keeps up with many ModelServes at once, and what it holds in memory.

    .venv/bin/python bench/operator_scale.py 100 1000

Starts the test bed's control plane (etcd, kube-apiserver, controller-manager,
scheduler, KWOK) with the ModelServe and Traefik CRDs, then for each N on the
command line, in a fresh namespace and with a fresh `modelserve-operator` process:

- creates N llama.cpp-on-CPU ModelServes (1 replica, 10m CPU, 16Mi) from a pool of
  client threads, noting the monotonic time at which each create call returned;
- watches Deployments and ModelServes from this process and notes when each
  Deployment's first event and each ModelServe's first `phase: Ready` arrive here;
- samples the operator's VmRSS (and reads VmHWM, the kernel's own peak) every 0.25 s,
  and the CPU time of the operator and of each control-plane process.

Watches rather than polling: they give each object's time to within the event's
delivery, and a list of 1,000 objects every second would compete for the same CPUs.
One list at the end is the authority for how many ModelServes are Ready. Nothing
asserts on time: the figures are printed, with the machine they come from.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shlex
import shutil
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
from modelserve.testbed.platform import RunningOperator, start_operator
from modelserve.testbed.processes import ManagedProcess, descendants

ROOT = Path(__file__).resolve().parents[1]
TRAEFIK_CRDS = ROOT / "testbed" / "modelserve" / "testbed" / "traefik_crds.yaml"
CRD_NAMES = (
    "crd/modelserves.llm.modelserve.io",
    "crd/ingressroutes.traefik.io",
    "crd/middlewares.traefik.io",
)
MODELSERVES = ("llm.modelserve.io", "v1alpha1", "modelserves")
DEPLOYMENTS = ("apps", "v1", "deployments")
# build_node caps every fake node at 110 pods: room for 1,000 pods means more nodes.
PODS_PER_NODE = 100
OPERATOR_SETTINGS = {
    "OPERATOR_MODEL_STORE_ENDPOINT": "modelserve-minio.modelserve.svc:9000",
    "OPERATOR_MODEL_STORE_ACCESS_KEY": "bench-access-key",
    "OPERATOR_MODEL_STORE_SECRET_KEY": "bench-secret-key",
}
SAMPLE_INTERVAL = 0.25
PROGRESS_INTERVAL = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KLOG_ERROR = re.compile(r"E\d{4} ")
KLOG_WARNING = re.compile(r"W\d{4} ")
# `[time] logger [LEVEL   ] ` (kopf) or `E1123 19:52:07.123456  42 file.go:12] ` (klog).
LOG_PREFIX = re.compile(r"^\[[^]]*\] \S+\s+\[[A-Z ]+\] |^[EWI]\d{4} \S+\s+\d+ [^]]+\] ")

Obj = dict[str, Any]


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
            "model": {"uri": "s3://bench-models/tiny.gguf", "format": "gguf"},
            "replicas": 1,
            "resources": {"cpu": "10m", "memory": "16Mi"},
        },
    }


def install_crds(cluster: KubeCluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"), "-f", str(TRAEFIK_CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", *CRD_NAMES)


def api_client(kubeconfig: Path, connections: int) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    # One pooled connection per thread: urllib3 would otherwise open and drop extra ones.
    configuration.connection_pool_maxsize = connections
    return k8s.ApiClient(configuration)


# --- measuring ------------------------------------------------------------------------------


class Watcher:
    """Notes when each object of one kind in one namespace first satisfies `reached`."""

    def __init__(
        self,
        api: k8s.ApiClient,
        resource: tuple[str, str, str],
        namespace: str,
        reached: Callable[[Obj], bool],
    ) -> None:
        # The custom-objects API reads any kind as plain dicts: no model classes to build.
        self._custom = k8s.CustomObjectsApi(api)
        self._args = (*resource[:2], namespace, resource[2])
        self._reached = reached
        self._watch = watch.Watch()
        self._lock = threading.Lock()
        self._first: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._watch.stop()
        self._thread.join(timeout=2)

    def times(self) -> dict[str, float]:
        with self._lock:
            return dict(self._first)

    def _run(self) -> None:
        listing = self._custom.list_namespaced_custom_object(*self._args)
        version = listing["metadata"]["resourceVersion"]
        try:
            for event in self._watch.stream(
                self._custom.list_namespaced_custom_object, *self._args, resource_version=version
            ):
                obj = event["object"]
                if event["type"] in ("ADDED", "MODIFIED") and self._reached(obj):
                    with self._lock:
                        self._first.setdefault(obj["metadata"]["name"], time.monotonic())
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            if not self._stopping.is_set():
                self.error = f"{type(error).__name__}: {error}"


def is_ready(obj: Obj) -> bool:
    return bool((obj.get("status") or {}).get("phase") == "Ready")


def _proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/<pid>/status; empty if the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return {
        key: int(value.split()[0])
        for key, _, value in (line.partition(":") for line in lines)
        if value.strip().endswith("kB")
    }


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of the process and its children, from /proc/<pid>/stat."""
    ticks = 0
    for each in descendants([pid]) if pid else ():
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited in the meantime
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICKS


class MemorySampler:
    """Peak resident memory of a process and its children, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak_rss_kib = 0
        self.peak_hwm_kib = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stopping.wait(SAMPLE_INTERVAL):
            figures = [_proc_status(pid) for pid in descendants([self._pid])]
            rss = sum(f.get("VmRSS", 0) for f in figures)
            hwm = sum(f.get("VmHWM", 0) for f in figures)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_hwm_kib = max(self.peak_hwm_kib, hwm)


def cpu_snapshot(processes: Iterable[ManagedProcess]) -> dict[str, float]:
    figures = {process.name: cpu_seconds(process.pid) for process in processes}
    figures["this benchmark"] = sum(os.times()[:2])  # its client threads share the CPUs
    return figures


def log_offsets(processes: Iterable[ManagedProcess]) -> dict[str, int]:
    return {p.name: p.log_path.stat().st_size if p.log_path.exists() else 0 for p in processes}


def log_lines_since(process: ManagedProcess, offset: int) -> list[str]:
    with process.log_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace").splitlines()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- one size -------------------------------------------------------------------------------


@dataclass
class Run:
    """What one size's run saw, in monotonic seconds."""

    n: int
    namespace: str
    began: float = 0.0
    created_at: dict[str, float] = field(default_factory=dict)
    ended: float = 0.0
    deployments: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    phases: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    peak_rss_kib: int = 0
    peak_hwm_kib: int = 0
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


def wait_ready(run: Run, deployments: Watcher, ready: Watcher, timeout: float) -> None:
    deadline = run.began + timeout
    last_report = time.monotonic()
    while time.monotonic() < deadline and len(ready.times()) < run.n:
        time.sleep(0.5)
        if time.monotonic() - last_report >= PROGRESS_INTERVAL:
            last_report = time.monotonic()
            print(
                f"    t={last_report - run.began:6.1f} s  deployments {len(deployments.times())}"
                f"/{run.n}  Ready {len(ready.times())}/{run.n}",
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
    api: k8s.ApiClient,
    processes: Sequence[ManagedProcess],
    operator: RunningOperator,
    run: Run,
    options: argparse.Namespace,
) -> None:
    deployments = Watcher(api, DEPLOYMENTS, run.namespace, lambda _: True)
    ready = Watcher(api, MODELSERVES, run.namespace, is_ready)
    sampler = MemorySampler(operator.process.pid or 0)
    for started in (deployments, ready, sampler):
        started.start()
    time.sleep(1.0)  # let both watches connect before the first create
    offsets, cpu_before = log_offsets(processes), cpu_snapshot(processes)
    try:
        run.began = time.monotonic()
        run.created_at = create_all(api, run.namespace, run.n, options.workers)
        print(f"    created {run.n} in {time.monotonic() - run.began:.1f} s", flush=True)
        wait_ready(run, deployments, ready, options.timeout)
        run.ended = time.monotonic()
    finally:
        cpu_after = cpu_snapshot(processes)
        for stopped in (deployments, ready, sampler):
            stopped.stop()
    run.cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    run.deployments, run.ready = deployments.times(), ready.times()
    run.peak_rss_kib, run.peak_hwm_kib = sampler.peak_rss_kib, sampler.peak_hwm_kib
    run.logs = {p.name: log_lines_since(p, offsets.get(p.name, 0)) for p in processes}
    run.watch_errors = [w.error for w in (deployments, ready) if w.error]
    run.phases = final_phases(api, run.namespace)


def run_size(
    cluster: KubeCluster, api: k8s.ApiClient, folder: Path, n: int, options: argparse.Namespace
) -> Run:
    """One size in its own namespace, with an operator of its own; the namespace goes after."""
    run = Run(n, f"bench-{n}")
    core = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": run.namespace}})
    settings = {**OPERATOR_SETTINGS, **dict(s.split("=", 1) for s in options.setting)}
    operator = start_operator(cluster.kubeconfig, folder / "logs" / f"n{n}", settings)
    try:
        measure(api, [*cluster.processes, operator.process], operator, run, options)
        report(run, settings)
    finally:
        # Stopped first: its retries against a terminating namespace are not what we measure.
        operator.stop()
        core.delete_namespace(run.namespace)
        gone = wait_namespace_gone(core, run.namespace, options.cleanup_timeout)
        print(f"    namespace deleted in {gone}\n", flush=True)
    return run


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


def latencies(run: Run, seen: Mapping[str, float]) -> str:
    values = [seen[name] - run.created_at[name] for name in seen if name in run.created_at]
    if not values:
        return "none seen"
    return (
        f"p50 {percentile(values, 50):6.2f} s   p99 {percentile(values, 99):6.2f} s   "
        f"min {min(values):6.2f} s   max {max(values):6.2f} s   ({len(values)} objects)"
    )


def until_all(run: Run, seen: Mapping[str, float]) -> str:
    if len(seen) < run.n:
        return f"not reached: {len(seen)}/{run.n} after {run.ended - run.began:.1f} s"
    return f"{max(seen.values()) - run.began:6.1f} s"


def log_problems(lines: Sequence[str]) -> tuple[list[str], list[str]]:
    """Error and warning lines, in kopf's `[ERROR   ]` and klog's `E1123 ...` forms."""
    errors = [line for line in lines if KLOG_ERROR.match(line) or "[ERROR" in line]
    warnings = [line for line in lines if KLOG_WARNING.match(line) or "[WARNING" in line]
    return errors, warnings


def common_messages(lines: Sequence[str], top: int = 3) -> list[tuple[int, str]]:
    """The most frequent messages, with timestamps cut and numbers blurred to group them."""
    kinds = Counter(re.sub(r"\d+", "N", LOG_PREFIX.sub("", line))[:110] for line in lines)
    return [(count, text) for text, count in kinds.most_common(top)]


def report(run: Run, settings: Mapping[str, str]) -> None:
    created = max(run.created_at.values()) - run.began
    not_ready = run.n - run.phases.get("Ready", 0)
    wall = max(run.ended - run.began, 1e-9)
    limit = settings.get("OPERATOR_API_THREADS", "32 (default)")
    print(f"  N = {run.n}: namespace {run.namespace}, fresh operator, api_threads {limit}")
    print(
        f"    all {run.n} create calls returned after   {created:6.1f} s ({run.n / created:.0f}/s)"
    )
    print(f"    every Deployment exists after             {until_all(run, run.deployments)}")
    print(f"    every ModelServe Ready after              {until_all(run, run.ready)}")
    print(f"    ModelServes not Ready at the end: {not_ready}  (phases: {dict(run.phases)})")
    print("    per object, first Deployment event here - its ModelServe create returned:")
    print(f"      {latencies(run, run.deployments)}")
    print("    per object, first phase=Ready event here - its ModelServe create returned:")
    print(f"      {latencies(run, run.ready)}")
    print(
        f"    operator memory: peak VmRSS {run.peak_rss_kib / 1024:.1f} MiB "
        f"(sampled every {SAMPLE_INTERVAL} s), peak VmHWM {run.peak_hwm_kib / 1024:.1f} MiB"
    )
    usage = ", ".join(f"{name} {100 * s / wall:.0f}%" for name, s in sorted(run.cpu.items()))
    print(f"    CPU over the {wall:.0f} s run, % of one core: {usage}")
    for name, lines in sorted(run.logs.items()):
        errors, warnings = log_problems(lines)
        throttled = sum("client-side throttling" in line for line in lines)
        print(
            f"    log {name}: {len(errors)} errors, {len(warnings)} warnings,"
            f" {throttled} client-side throttling lines"
        )
        for count, text in common_messages(errors + warnings):
            print(f"      {count:5d} x {text}")
    for error in run.watch_errors:
        print(f"    a watch of this benchmark failed: {error}")
    print(flush=True)


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
    print(f"  reproduce: .venv/bin/python bench/operator_scale.py {shlex.join(sys.argv[1:])}")
    print(flush=True)


# --- the whole benchmark --------------------------------------------------------------------


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 1000])
    parser.add_argument("--timeout", type=float, default=300.0, help="per size, seconds")
    parser.add_argument("--workers", type=int, default=16, help="client threads creating")
    parser.add_argument("--cleanup-timeout", type=float, default=300.0)
    parser.add_argument(
        "--setting", action="append", default=[], help="OPERATOR_X=value for the operator"
    )
    parser.add_argument("--keep-logs", type=Path, help="copy every process's log here")
    return parser.parse_args()


def main() -> None:
    options = parse_options()
    nodes = cpu_nodes(max(options.sizes))
    print_header(options.sizes, nodes)
    with tempfile.TemporaryDirectory(prefix="modelserve-bench-") as tmp:
        folder = Path(tmp)
        began = time.monotonic()
        cluster = start_cluster(folder / "kube", nodes=nodes)
        try:
            install_crds(cluster)
            print(f"  control plane and CRDs ready in {time.monotonic() - began:.1f} s\n")
            api = api_client(cluster.kubeconfig, options.workers + 8)
            try:
                for n in options.sizes:
                    run_size(cluster, api, folder, n, options)
            finally:
                api.close()
        finally:
            cluster.stop()
            if options.keep_logs:
                for name, logs in (
                    ("kube", folder / "kube" / "logs"),
                    ("operator", folder / "logs"),
                ):
                    shutil.copytree(logs, options.keep_logs / name, dirs_exist_ok=True)


if __name__ == "__main__":
    main()
