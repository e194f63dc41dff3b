"""The agent's loop: every interval, read the GPUs (nvidia-smi), apply the power profile's
limit where that is switched on, and renew this node's GPU report Lease
(`modelserve.common.gpu_reports`).

Every failure short of a bug ends up in the report rather than stopping the agent:
nvidia-smi missing or failing (`error`, no figures), the profile unreadable or `-pl`
refused (`power`). A Lease that cannot be written is logged; the next interval tries
again. The `kubernetes` client is synchronous, and so is this loop: the agent does
nothing else.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelserve.common.gpu_reports import (
    GpuFigures,
    GpuReport,
    PowerReport,
    PowerResult,
    build_gpu_lease,
    gpu_lease_name,
)
from modelserve.common.leases import delete_lease, put_lease
from modelserve.common.power_profiles import CONFIGMAP_NAME, CurrentProfile, current_profile
from modelserve.nodeagent import power, smi
from modelserve.nodeagent.settings import NodeAgentSettings

logger = logging.getLogger(__name__)
REQUEST_SECONDS = 5
NOT_FOUND = 404
API_FAILURES = (ApiException, HTTPError, OSError)
# Answers of `nvidia-smi -pl` that asking again would not change; a timeout or another
# failure is tried again at the next pass.
DEFINITE = ("not_permitted", "not_supported")
# (exit status, stdout and stderr together)
Runner = Callable[[list[str], float], tuple[int, str]]


def run_command(args: list[str], timeout: float) -> tuple[int, str]:
    """Run a command; a missing program or a timeout is an exit status, not an exception."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, f"{args[0]}: not found"
    except PermissionError as error:
        return 126, f"{args[0]}: {error}"
    except subprocess.TimeoutExpired:
        return 124, f"{args[0]} did not answer within {timeout:g} s"
    return done.returncode, (done.stdout or "") + (done.stderr or "")


def _why(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"


class NodeAgent:
    def __init__(
        self,
        settings: NodeAgentSettings,
        api: k8s.ApiClient,
        run: Runner = run_command,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._core = k8s.CoreV1Api(api)
        self._leases = k8s.CoordinationV1Api(api)
        self._run = run
        self._clock = clock
        # Definite refusals of `-pl` by (GPU index, watts): not asked again until the target
        # changes.
        self._refused: dict[tuple[int, float], PowerResult] = {}

    @property
    def lease_name(self) -> str:
        return gpu_lease_name(self._settings.node_name)

    # --- One round -----------------------------------------------------------------------

    def measure(self) -> tuple[tuple[GpuFigures, ...], str | None]:
        """The GPUs' figures, and why there are none (or which lines were unreadable)."""
        command = smi.query_command(self._settings.nvidia_smi)
        code, output = self._run(command, self._settings.command_timeout_seconds)
        if code != 0:
            words = " ".join(output.split())[:300]
            return (), f"nvidia-smi exited {code}: {words}"
        parsed = smi.parse_gpus(output)
        problem = "; ".join(parsed.problems) or None
        if not parsed.gpus:
            return (), problem or "nvidia-smi listed no GPU"
        if problem:
            logger.warning("unreadable nvidia-smi lines: %s", problem)
        return parsed.gpus, None

    def read_profile(self) -> CurrentProfile | str:
        """The platform's power profile, or why it could not be read."""
        try:
            found = self._core.read_namespaced_config_map(
                CONFIGMAP_NAME, self._settings.namespace, _request_timeout=REQUEST_SECONDS
            )
        except ApiException as error:
            if error.status == NOT_FOUND:
                return current_profile(None)
            return f"the power profile could not be read: {_why(error)}"
        except (HTTPError, OSError) as error:
            return f"the power profile could not be read: {_why(error)}"
        return current_profile(found.data or {})

    def apply_power(self, gpus: tuple[GpuFigures, ...]) -> PowerReport:
        enabled = self._settings.apply_power_limits
        profile = self.read_profile()
        if isinstance(profile, str):
            return PowerReport(None, False, None, enabled, message=profile)
        target = profile.profile.power_limit_w
        base = PowerReport(profile.name, profile.chosen, target, enabled)
        if not profile.chosen:
            return _with(
                base,
                message=f"no power profile chosen (no ConfigMap {CONFIGMAP_NAME}): "
                "the GPUs' power limits are left as they are",
            )
        if not gpus:
            return _with(base, message="no GPU figures: no power limit set")
        if not enabled:
            results = tuple(
                PowerResult(
                    gpu.index,
                    gpu.uuid,
                    "disabled",
                    gpu.power_limit_w,
                    "NODEAGENT_APPLY_POWER_LIMITS is off: the limit is left as it is",
                )
                for gpu in gpus
            )
            return _with(base, gpus=results)
        code, output = self._run(
            smi.limits_command(self._settings.nvidia_smi), self._settings.command_timeout_seconds
        )
        if code != 0:
            words = " ".join(output.split())[:300]
            return _with(base, message=f"the GPUs' power limit bounds are unknown: {words}")
        bounds = smi.parse_limits(output)
        by_index = {gpu.index: gpu for gpu in gpus}
        done: list[PowerResult] = []
        for plan in power.plan_limits(target, gpus, bounds):
            if plan.limit_w is None:
                done.append(power.unchanged(plan, by_index[plan.index]))
                continue
            refused = self._refused.get((plan.index, plan.limit_w))
            if refused is not None:
                done.append(refused)
                continue
            command = smi.set_limit_command(self._settings.nvidia_smi, plan.index, plan.limit_w)
            code, output = self._run(command, self._settings.command_timeout_seconds)
            result = power.outcome(plan, code, output)
            if code == 0:
                logger.info("GPU %s: power limit %s (%s)", plan.index, plan.limit_w, plan.message)
            else:
                logger.warning("GPU %s: %s", plan.index, result.message)
                if result.result in DEFINITE:  # asked again, the same answer
                    self._refused[(plan.index, plan.limit_w)] = result
            done.append(result)
        return _with(base, gpus=tuple(done))

    def report(self) -> GpuReport:
        gpus, error = self.measure()
        return GpuReport(
            node=self._settings.node_name,
            renewed=self._clock(),
            duration=self._settings.lease_seconds,
            gpus=gpus,
            error=error,
            power=self.apply_power(gpus),
        )

    def write(self, report: GpuReport) -> bool:
        """Write the report's Lease; False when that failed (logged)."""
        body = build_gpu_lease(report, self._settings.namespace)
        try:
            put_lease(
                self._leases,
                self.lease_name,
                self._settings.namespace,
                body,
                timeout=REQUEST_SECONDS,
            )
        except API_FAILURES as error:
            logger.warning("the GPU report %s was not written: %s", self.lease_name, _why(error))
            return False
        return True

    # --- The loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.write(self.report())
            stop.wait(self._settings.interval_seconds)

    def close(self) -> None:
        """Delete the Lease: the node has no live figures from now on."""
        try:
            delete_lease(
                self._leases, self.lease_name, self._settings.namespace, timeout=REQUEST_SECONDS
            )
        except API_FAILURES as error:
            logger.warning("the GPU report %s was not deleted: %s", self.lease_name, _why(error))


def _with(
    report: PowerReport,
    *,
    gpus: tuple[PowerResult, ...] = (),
    message: str | None = None,
) -> PowerReport:
    return PowerReport(
        report.profile, report.chosen, report.target_w, report.enabled, gpus, message
    )
