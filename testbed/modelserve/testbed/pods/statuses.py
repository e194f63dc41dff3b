"""A pod's status as a kubelet writes it, from what the runner saw: pure functions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# terminationMessagePolicy FallbackToLogsOnError: the end of the log, as the kubelet takes it.
MESSAGE_LINES = 80
MESSAGE_BYTES = 2048


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRecord:
    """What happened to one container so far (the kubelet's containerStatus)."""

    name: str
    image: str
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "PodInitializing"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False

    def waiting(self, reason: str, message: str = "") -> None:
        self.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        self.ready = self.started = False

    def running(self, since: dt.datetime) -> None:
        self.state = {"running": {"startedAt": timestamp(since)}}
        self.ready = self.started = False

    def terminated(
        self, exit_code: int, started: dt.datetime | None, finished: dt.datetime, message: str
    ) -> dict[str, Any]:
        done: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "finishedAt": timestamp(finished),
        }
        if started is not None:
            done["startedAt"] = timestamp(started)
        if message:
            done["message"] = message
        self.state = {"terminated": done}
        self.ready = self.started = False
        return done

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
        }
        if self.last_state:
            status["lastState"] = self.last_state
        return status


def exit_code(returncode: int) -> int:
    """A process killed by signal N exits, in a container's status, with 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def log_message(log: str) -> str:
    """The end of a failed container's log (terminationMessagePolicy FallbackToLogsOnError)."""
    tail = "\n".join(log.splitlines()[-MESSAGE_LINES:])
    return tail.encode()[-MESSAGE_BYTES:].decode(errors="replace").strip()


def conditions(
    previous: Sequence[Mapping[str, Any]], wanted: Mapping[str, bool], now: dt.datetime
) -> list[dict[str, Any]]:
    """The pod's conditions, keeping each transition time until its status changes."""
    before = {item["type"]: item for item in previous}
    result = []
    for kind, value in wanted.items():
        status = "True" if value else "False"
        old = before.get(kind)
        moment = (
            old["lastTransitionTime"]
            if old is not None and old.get("status") == status and old.get("lastTransitionTime")
            else timestamp(now)
        )
        result.append({"type": kind, "status": status, "lastTransitionTime": moment})
    return result


def pod_status(
    *,
    previous_conditions: Sequence[Mapping[str, Any]],
    pod_ip: str,
    host_ip: str,
    start_time: dt.datetime,
    init: Sequence[ContainerRecord],
    main: Sequence[ContainerRecord],
    initialized: bool,
    now: dt.datetime,
) -> dict[str, Any]:
    """The whole `status` of a pod of `restartPolicy: Always` that the runner runs."""
    containers_ready = bool(main) and all(record.ready for record in main)
    running = initialized and any(
        "running" in record.state or record.restart_count for record in main
    )
    return {
        "phase": "Running" if running else "Pending",
        "conditions": conditions(
            previous_conditions,
            {
                "PodReadyToStartContainers": True,
                "Initialized": initialized,
                "ContainersReady": containers_ready,
                "Ready": containers_ready,
                "PodScheduled": True,
            },
            now,
        ),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": timestamp(start_time),
        "initContainerStatuses": [record.as_status() for record in init],
        "containerStatuses": [record.as_status() for record in main],
    }
