"""`PodRunner`: the kubelet of the pods that really run on the test bed.

KWOK leaves alone the pods that match `RUN_SELECTOR` (`--disregard-status-with-label-
selector`); the runner watches them and, once the scheduler bound one to a node, runs it
the way a kubelet would:

- an IP from the pod network (refused unless the host routes it into that network);
- the init containers one after the other, then the server, each as a process with its
  log file; `kubectl logs` reads that file through KWOK's `Logs` resource for the pod;
- probes (`httpGet`) of the pod's own spec, at its period but at least once every
  `probe_period_cap` seconds: the pod is Ready only while its readiness probe answers;
- a process that exits is a container restart (`lastState.terminated`, `restartCount`)
  and is started again after a back-off (1 s, doubling up to 30 s);
- a pod being deleted gets its preStop hook (`sleep` or `httpGet`), SIGTERM, SIGKILL
  after its grace period, then the runner removes it, as a kubelet confirms a deletion;
  every process of the pod (and their children: each runs in a process group) ends.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from modelserve.testbed.pods.containers import (
    ContainerError,
    Programs,
    local_process,
    volume_folders,
)
from modelserve.testbed.pods.logs import CriLog
from modelserve.testbed.pods.network import PodNetwork, PodNetworkError
from modelserve.testbed.pods.statuses import (
    ContainerRecord,
    exit_code,
    log_message,
    pod_status,
)
from modelserve.testbed.processes import ManagedProcess

logger = logging.getLogger(__name__)

RUN_SELECTOR = "llm.modelserve.io/runtime=llamacpp"
KWOK_GROUP, KWOK_VERSION = "kwok.x-k8s.io", "v1alpha1"
TICK = 0.2
DEFAULT_GRACE = 30
NOT_FOUND, GONE = 404, 410


def _key(meta: Mapping[str, Any]) -> str:
    return f"{meta['namespace']}/{meta['name']}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class RunnerSettings:
    probe_period_cap: float = 1.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    # A container that ran this long before it exited starts again without waiting.
    backoff_reset: float = 60.0


class Probe:
    """One probe of a container (`httpGet` only: the runtimes serve /health)."""

    def __init__(self, spec: Mapping[str, Any], ports: Mapping[str, int], cap: float) -> None:
        get = spec.get("httpGet")
        if get is None:
            raise ContainerError("ProbeNotSupported", "the test bed runs httpGet probes only")
        port = get["port"]
        self.port = ports[port] if isinstance(port, str) else int(port)
        self.path = get.get("path", "/")
        self.period = min(float(spec.get("periodSeconds", 10)), cap)
        self.timeout = float(spec.get("timeoutSeconds", 1))
        self.failures_allowed = int(spec.get("failureThreshold", 3))
        self.delay = float(spec.get("initialDelaySeconds", 0))
        self.failures = 0
        self.due = 0.0

    def reset(self, now: float) -> None:
        self.failures = 0
        self.due = now + self.delay

    def check(self, pod_ip: str, now: float) -> bool | None:
        """True/False when it ran (a success, a failure); None when not due yet."""
        if now < self.due:
            return None
        self.due = now + self.period
        url = f"http://{pod_ip}:{self.port}{self.path}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as answer:
                ok = 200 <= answer.status < 400
        except (urllib.error.URLError, OSError):
            ok = False
        self.failures = 0 if ok else self.failures + 1
        return bool(ok)


class Stopping(Exception):
    """The pod is being deleted, or the runner stops: leave whatever the worker does."""


class PodWorker:
    """Runs one pod in a thread of its own, from its IP to its removal."""

    def __init__(self, runner: PodRunner, pod: dict[str, Any]) -> None:
        self.runner = runner
        self.pod = pod
        meta = pod["metadata"]
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.uid: str = meta["uid"]
        self.folder = runner.folder / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid[:8]}"
        self.pod_ip = ""
        self.deleting = threading.Event()
        self.gone = threading.Event()  # removed from the API: end at once
        self.init = [ContainerRecord(c["name"], c.get("image", "")) for c in self._init_specs]
        self.main = [ContainerRecord(c["name"], c.get("image", "")) for c in self._main_specs]
        self.processes: dict[str, ManagedProcess] = {}
        self.logs: dict[str, CriLog] = {}
        self.started_at: dict[str, dt.datetime] = {}
        self._conditions: list[dict[str, Any]] = []
        self._written: dict[str, Any] | None = None
        self._initialized = False
        self._start_time = _now()
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.key}", daemon=True)

    @property
    def _init_specs(self) -> list[dict[str, Any]]:
        return list(self.pod["spec"].get("initContainers") or [])

    @property
    def _main_specs(self) -> list[dict[str, Any]]:
        return list(self.pod["spec"].get("containers") or [])

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    # --- The pod's life ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._allocate()
            folders = volume_folders(self.pod, self.folder, self.runner.folder / "claims")
            for folder in folders.values():
                folder.mkdir(parents=True, exist_ok=True)
            self.runner.publish_logs(self.pod, self._log_files())
            for spec, record in zip(self._init_specs, self.init, strict=True):
                self._run_to_completion(spec, record, folders)
            self._initialized = True
            self._serve(folders)
        except Stopping:
            pass
        except (ContainerError, PodNetworkError) as error:
            reason = error.reason if isinstance(error, ContainerError) else "PodNetworkError"
            for record in [*self.init, *self.main]:
                if "waiting" in record.state:
                    record.waiting(reason, str(error))
            self._write_status()
            self.deleting.wait()
        except Exception:
            logger.exception("pod %s: the runner failed", self.key)
        finally:
            self._terminate()

    def _allocate(self) -> None:
        self.pod_ip = self.runner.network.allocate()
        self.runner.network.check_route(self.pod_ip)
        self._write_status()

    def _log_files(self) -> dict[str, tuple[Path, Path]]:
        logs = self.folder / "logs"
        return {
            spec["name"]: (logs / f"{spec['name']}.log", logs / f"{spec['name']}.previous.log")
            for spec in [*self._init_specs, *self._main_specs]
        }

    def _start(self, spec: dict[str, Any], folders: Mapping[str, Path]) -> ManagedProcess:
        process = local_process(
            spec,
            self.pod,
            pod_ip=self.pod_ip,
            folders=folders,
            programs=self.runner.programs,
            lookup=self.runner.lookup(self.pod["metadata"]["namespace"]),
        )
        current, previous = self._log_files()[spec["name"]]
        current.parent.mkdir(parents=True, exist_ok=True)
        if current.exists() and current.stat().st_size:
            current.replace(previous)
        current.touch()
        raw = current.with_suffix(".raw")
        raw.unlink(missing_ok=True)
        managed = ManagedProcess(
            f"{self.key}/{spec['name']}",
            [*self.runner.network.exec_prefix(), *process.argv],
            raw,
            # A container gets its own environment, not the test bed's.
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self.folder),
                **process.env,
            },
            cwd=self.folder,
            inherit_env=False,
        )
        managed.start()
        follower = CriLog(raw, current, lambda: not managed.running())
        follower.start()
        self.logs[spec["name"]] = follower
        self.processes[spec["name"]] = managed
        self.started_at[spec["name"]] = _now()
        return managed

    def _finished(
        self, spec: dict[str, Any], record: ContainerRecord, process: ManagedProcess, why: str = ""
    ) -> int:
        """Record the end of a container's process; its exit code."""
        process.stop(timeout=1)
        self.logs.pop(spec["name"]).close()
        code = exit_code(process.returncode if process.returncode is not None else -9)
        message = why
        if (
            code != 0
            and not message
            and spec.get("terminationMessagePolicy") == ("FallbackToLogsOnError")
        ):
            message = log_message(process.log_path.read_text(errors="replace"))
        done = record.terminated(code, self.started_at.get(spec["name"]), _now(), message)
        self.processes.pop(spec["name"], None)
        return int(done["exitCode"])

    def _restarting(self, record: ContainerRecord, failures: int) -> float:
        """Record that a container ended after `failures` failures in a row (0: after a
        long run); the back-off before it starts again."""
        settings = self.runner.settings
        delay = 0.0
        if failures:
            delay = min(settings.backoff_base * 2 ** (failures - 1), settings.backoff_cap)
        record.restart_count += 1
        record.last_state = {"terminated": record.state["terminated"]}
        record.waiting(
            "CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container={record.name}"
        )
        return delay

    def _wait(self, seconds: float) -> None:
        """Sleep, unless the pod goes away meanwhile."""
        if self.deleting.wait(seconds) or self.gone.is_set():
            raise Stopping

    def _run_to_completion(
        self, spec: dict[str, Any], record: ContainerRecord, folders: Mapping[str, Path]
    ) -> None:
        failures = 0
        while True:
            process = self._start(spec, folders)
            record.running(self.started_at[spec["name"]])
            self._write_status()
            while process.running():
                self._wait(TICK)
            if self._finished(spec, record, process) == 0:
                record.ready = True
                self._write_status()
                return
            failures += 1
            delay = self._restarting(record, failures)
            self._write_status()
            self._wait(delay)

    def _serve(self, folders: Mapping[str, Path]) -> None:
        """The main containers until the pod goes: probes, restarts, status."""
        specs = self._main_specs
        probes = {spec["name"]: self._probes(spec) for spec in specs}
        failures = dict.fromkeys(probes, 0)
        restart_at: dict[str, float] = {spec["name"]: 0.0 for spec in specs}
        startup_done: dict[str, bool] = {}
        while True:
            now = time.monotonic()
            for spec, record in zip(specs, self.main, strict=True):
                name = spec["name"]
                process = self.processes.get(name)
                kinds = probes[name]
                if process is None:
                    if now >= restart_at[name]:
                        self._start(spec, folders)
                        record.running(self.started_at[name])
                        startup_done[name] = "startup" not in kinds
                        for probe in kinds.values():
                            probe.reset(now)
                    continue
                why = ""
                if process.running():
                    why = self._probe(record, kinds, startup_done, name, now)
                    if not why:
                        continue
                ran = (_now() - self.started_at[name]).total_seconds()
                self._finished(spec, record, process, why)
                long_run = ran >= self.runner.settings.backoff_reset
                failures[name] = 0 if long_run else failures[name] + 1
                delay = self._restarting(record, failures[name])
                restart_at[name] = now + delay
                logger.info("pod %s: container %s ended; restart in %.0fs", self.key, name, delay)
            self._write_status()
            self._wait(TICK)

    def _probes(self, spec: dict[str, Any]) -> dict[str, Probe]:
        ports = {p["name"]: int(p["containerPort"]) for p in spec.get("ports") or [] if "name" in p}
        cap = self.runner.settings.probe_period_cap
        return {
            kind: Probe(spec[f"{kind}Probe"], ports, cap)
            for kind in ("startup", "readiness", "liveness")
            if spec.get(f"{kind}Probe")
        }

    def _probe(
        self,
        record: ContainerRecord,
        probes: Mapping[str, Probe],
        startup_done: dict[str, bool],
        name: str,
        now: float,
    ) -> str:
        """Run the probes that are due; why the container must be restarted, or ""."""
        if not startup_done[name]:
            startup = probes["startup"]
            result = startup.check(self.pod_ip, now)
            if result:
                startup_done[name] = True
                record.started = True
            elif result is False and startup.failures >= startup.failures_allowed:
                return "Startup probe failed"
            return ""
        record.started = True
        readiness = probes.get("readiness")
        if readiness is None:
            record.ready = True
        else:
            result = readiness.check(self.pod_ip, now)
            if result:
                record.ready = True
            elif result is False and readiness.failures >= readiness.failures_allowed:
                record.ready = False
        liveness = probes.get("liveness")
        if liveness is not None:
            result = liveness.check(self.pod_ip, now)
            if result is False and liveness.failures >= liveness.failures_allowed:
                return "Liveness probe failed"
        return ""

    def _write_status(self) -> None:
        if not self.pod_ip or self.gone.is_set():
            return
        status = pod_status(
            previous_conditions=self._conditions,
            pod_ip=self.pod_ip,
            host_ip=self.runner.node_ip,
            start_time=self._start_time,
            init=self.init,
            main=self.main,
            initialized=self._initialized,
            now=_now(),
        )
        self._conditions = status["conditions"]
        if status == self._written:
            return
        if self.runner.write_status(self.pod, status):
            self._written = status

    # --- Its end ---------------------------------------------------------------------

    def _terminate(self) -> None:
        """preStop, SIGTERM, SIGKILL after the grace period; then the pod is removed."""
        if self.deleting.is_set() and not self.gone.is_set():
            grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = self.pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE)
            deadline = time.monotonic() + float(grace)
            self._pre_stop(deadline)
            for process in list(self.processes.values()):
                process.stop(timeout=max(0.1, deadline - time.monotonic()))
        else:
            for process in list(self.processes.values()):
                process.stop(timeout=2)
        self.processes.clear()
        for follower in self.logs.values():
            follower.close()
        self.logs.clear()
        if self.deleting.is_set() and not self.gone.is_set():
            self.runner.remove_pod(self.pod)
        if self.pod_ip:
            self.runner.network.release(self.pod_ip)
        shutil.rmtree(self.folder / "volumes", ignore_errors=True)

    def _pre_stop(self, deadline: float) -> None:
        for spec in self._main_specs:
            if spec["name"] not in self.processes:
                continue
            hook = ((spec.get("lifecycle") or {}).get("preStop")) or {}
            if "sleep" in hook:
                seconds = float(hook["sleep"].get("seconds", 0))
                self.gone.wait(max(0.0, min(seconds, deadline - time.monotonic())))
            elif "httpGet" in hook:
                get = hook["httpGet"]
                url = f"http://{self.pod_ip}:{get['port']}{get.get('path', '/')}"
                with contextlib.suppress(urllib.error.URLError, OSError):
                    urllib.request.urlopen(url, timeout=max(0.1, deadline - time.monotonic()))
            elif hook:
                logger.warning("pod %s: only sleep and httpGet preStop hooks run here", self.key)


class PodRunner:
    """Watches the pods of `RUN_SELECTOR` and runs each in a `PodWorker`."""

    def __init__(
        self,
        kubeconfig: Path,
        network: PodNetwork,
        folder: Path,
        programs: Programs,
        *,
        node_ip: str,
        settings: RunnerSettings | None = None,
    ) -> None:
        self.api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        self.core = k8s.CoreV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.network = network
        self.folder = folder
        self.programs = programs
        self.node_ip = node_ip
        self.settings = settings or RunnerSettings()
        self.workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._watch: k8s_watch.Watch | None = None
        self._thread = threading.Thread(target=self._loop, name="pod-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.gone.set()
            worker.deleting.set()
        for worker in workers:
            worker.thread.join(timeout=20)
        self._thread.join(timeout=10)
        self.api.close()

    # --- Watching ---------------------------------------------------------------------

    def _loop(self) -> None:
        backoff = 0.5
        while not self._stopped.is_set():
            try:
                version = self._list()
                self._follow(version)
                backoff = 0.5
            except ApiException as error:
                if error.status != GONE:
                    logger.warning("watching pods failed: %s %s", error.status, error.reason)
            except Exception:
                if self._stopped.is_set():
                    return
                logger.exception("watching pods failed")
            if self._stopped.wait(backoff):
                return
            backoff = min(backoff * 2, 10.0)

    def _list(self) -> str:
        found = self.api.sanitize_for_serialization(
            self.core.list_pod_for_all_namespaces(label_selector=RUN_SELECTOR, _request_timeout=30)
        )
        seen = set()
        for pod in found["items"]:
            seen.add(pod["metadata"]["uid"])
            self._handle("MODIFIED", pod)
        with self._lock:
            vanished = [w for uid, w in self.workers.items() if uid not in seen]
        for worker in vanished:
            self._handle("DELETED", worker.pod)
        return str(found["metadata"]["resourceVersion"])

    def _follow(self, version: str) -> None:
        self._watch = k8s_watch.Watch()
        for event in self._watch.stream(
            self.core.list_pod_for_all_namespaces,
            label_selector=RUN_SELECTOR,
            resource_version=version,
            timeout_seconds=60,
            _request_timeout=90,
        ):
            if self._stopped.is_set():
                return
            self._handle(event["type"], event["raw_object"])

    def _handle(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    del self.workers[uid]
                    worker.gone.set()
                    worker.deleting.set()
                return
            if worker is not None:
                worker.update(pod)
                return
            if not pod["spec"].get("nodeName") or pod["status"].get("phase") in (
                "Succeeded",
                "Failed",
            ):
                return  # not scheduled yet, or over
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            worker.update(pod)
        worker.thread.start()

    # --- What workers ask of the API ---------------------------------------------------

    def lookup(self, namespace: str) -> Callable[[str, str, str], str | None]:
        def read(kind: str, name: str, key: str) -> str | None:
            try:
                if kind == "secret":
                    data = self.core.read_namespaced_secret(name, namespace).data or {}
                    value = data.get(key)
                    return base64.b64decode(value).decode() if value is not None else None
                configmap = self.core.read_namespaced_config_map(name, namespace).data or {}
                return configmap.get(key)
            except ApiException as error:
                if error.status == NOT_FOUND:
                    return None
                raise

        return read

    def write_status(self, pod: dict[str, Any], status: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}, _request_timeout=10
            )
        except ApiException as error:
            if error.status != NOT_FOUND:
                logger.warning(
                    "pod %s/%s: status not written: %s",
                    meta["namespace"],
                    meta["name"],
                    error.reason,
                )
            return False
        return True

    def remove_pod(self, pod: dict[str, Any]) -> None:
        """What a kubelet does once a deleted pod's containers ended."""
        meta = pod["metadata"]
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                grace_period_seconds=0,
                body=k8s.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=k8s.V1Preconditions(uid=meta["uid"])
                ),
            )

    def publish_logs(self, pod: dict[str, Any], files: Mapping[str, tuple[Path, Path]]) -> None:
        """KWOK's `Logs` for the pod: `kubectl logs` (with `--previous`) reads these files."""
        meta = pod["metadata"]
        body = {
            "apiVersion": f"{KWOK_GROUP}/{KWOK_VERSION}",
            "kind": "Logs",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
                ],
            },
            "spec": {
                "logs": [
                    {
                        "containers": [name],
                        "logsFile": str(current),
                        "previousLogsFile": str(previous),
                        "follow": True,
                    }
                    for name, (current, previous) in files.items()
                ]
            },
        }
        for path, _ in files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        try:
            self.custom.create_namespaced_custom_object(
                KWOK_GROUP, KWOK_VERSION, meta["namespace"], "logs", body
            )
        except ApiException as error:
            if error.status != 409:  # there already: a runner restarted
                logger.warning(
                    "pod %s/%s: no Logs resource: %s", meta["namespace"], meta["name"], error.reason
                )
