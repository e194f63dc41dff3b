"""What a container of a pod becomes on this machine: pure functions, no I/O.

The runner runs two kinds of containers:

- the platform's own commands (`command: [modelserve-…]`, e.g. the init step
  `modelserve-fetch-model`): the console script of this checkout's virtual environment;
- the server of the llama.cpp images (`ghcr.io/ggml-org/llama.cpp:server…`, CPU and CUDA
  alike): the native `llama-server`, with the container's own `args`, bound to the pod's
  IP (`--host 0.0.0.0` becomes the pod IP, since every pod of the namespace shares it and
  two servers on port 8080 would clash).

Both run inside the pod network: what a pod dials stays there (see `network`).

Volume mounts become folders: an `emptyDir` one per pod, a PersistentVolumeClaim one per
claim (replicas share it, as they share a ReadWriteMany volume); `projected`, `secret`,
`configMap` and `downwardAPI` volumes (the service account's token is one) are empty
folders, since the runtimes read none. Arguments and environment values under a mount
path are rewritten to the folder.

Security settings are not applied: the pod's and its containers' `securityContext` (user,
capabilities, seccomp, a read-only root filesystem) are ignored and every process runs as
the test bed's user; `automountServiceAccountToken: false` only means the pod has no token
volume, which changes nothing here. Environment values from `secretKeyRef` are read when a
container starts (each start again), as the kubelet does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Images whose entrypoint is llama.cpp's server; any tag that starts with `server`
# (`server`, `server-cuda`, `server-b5000`, ...).
LLAMACPP_REPOSITORIES = ("ghcr.io/ggml-org/llama.cpp",)
PLATFORM_COMMAND_PREFIX = "modelserve-"
ANY_ADDRESS = ("0.0.0.0", "::")
UNWRITTEN_VOLUMES = ("projected", "secret", "configMap", "downwardAPI")

# (kind, name, key) -> value: how a `valueFrom` reference is read (None: missing).
Lookup = Callable[[str, str, str], "str | None"]


class ContainerError(ValueError):
    """The container cannot run here; the message goes into its waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Programs:
    """Where this machine keeps what the images would run."""

    llama_server: Callable[[], Path]  # built on first use (minutes, once per machine)
    scripts: Path  # the folder of the platform's console scripts


@dataclass(frozen=True)
class LocalProcess:
    argv: tuple[str, ...]
    env: dict[str, str]


def is_llamacpp_server(image: str) -> bool:
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = image, "latest"
    return repository in LLAMACPP_REPOSITORIES and tag.startswith("server")


def volume_folders(pod: Mapping[str, Any], pod_dir: Path, claims_dir: Path) -> dict[str, Path]:
    """Each volume of the pod, by name, as a folder of this machine."""
    namespace = pod["metadata"]["namespace"]
    folders: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if "emptyDir" in volume:
            folders[name] = pod_dir / "volumes" / name
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            folders[name] = claims_dir / namespace / claim
        elif any(kind in volume for kind in UNWRITTEN_VOLUMES):
            # The service account's token (projected into every pod) and the like: mounted
            # as an empty folder, since neither runtime reads them.
            folders[name] = pod_dir / "volumes" / name
        else:
            kinds = sorted(key for key in volume if key != "name")
            raise ContainerError(
                "VolumeNotSupported",
                f"volume {name!r} ({', '.join(kinds)}): the test bed mounts emptyDir and "
                "persistentVolumeClaim volumes only",
            )
    return folders


def mount_map(container: Mapping[str, Any], folders: Mapping[str, Path]) -> list[tuple[str, Path]]:
    """(mount path, folder) for the container's mounts, the longest path first."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        folder = folders.get(mount["name"])
        if folder is None:
            raise ContainerError("VolumeNotFound", f"no volume {mount['name']!r} in the pod")
        sub = mount.get("subPath")
        mounts.append((mount["mountPath"].rstrip("/") or "/", folder / sub if sub else folder))
    return sorted(mounts, key=lambda item: len(item[0]), reverse=True)


def map_path(value: str, mounts: Sequence[tuple[str, Path]]) -> str:
    """`value` with a leading mount path replaced by its folder."""
    for path, folder in mounts:
        if value == path:
            return str(folder)
        if value.startswith(path + "/"):
            return str(folder / value[len(path) + 1 :])
    return value


def container_env(
    container: Mapping[str, Any], pod: Mapping[str, Any], pod_ip: str, lookup: Lookup
) -> dict[str, str]:
    """The container's environment: literal values and `valueFrom` references."""
    namespace = pod["metadata"]["namespace"]
    fields = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": namespace,
        "status.podIP": pod_ip,
        "spec.nodeName": pod["spec"].get("nodeName", ""),
    }
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name, source = item["name"], item.get("valueFrom")
        if source is None:
            env[name] = str(item.get("value", ""))
            continue
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path not in fields:
                raise ContainerError("CreateContainerConfigError", f"unsupported field {path!r}")
            env[name] = fields[path]
            continue
        for kind, key in (("secretKeyRef", "secret"), ("configMapKeyRef", "configmap")):
            ref = source.get(kind)
            if ref is None:
                continue
            value = lookup(key, ref["name"], ref["key"])
            if value is None:
                if ref.get("optional"):
                    break
                raise ContainerError(
                    "CreateContainerConfigError",
                    f"{key} {ref['name']!r} (key {ref['key']!r}) of {namespace} not found",
                )
            env[name] = value
            break
        else:
            raise ContainerError(
                "CreateContainerConfigError", f"unsupported valueFrom for {name!r}"
            )
    return env


def bind_to_pod(args: Sequence[str], pod_ip: str) -> list[str]:
    """`--host 0.0.0.0` (or `::`) as the pod IP: the server listens on its pod's address."""
    bound: list[str] = []
    for index, arg in enumerate(args):
        previous = args[index - 1] if index else ""
        if previous == "--host" and arg in ANY_ADDRESS:
            bound.append(pod_ip)
        elif arg.startswith("--host=") and arg.removeprefix("--host=") in ANY_ADDRESS:
            bound.append(f"--host={pod_ip}")
        else:
            bound.append(arg)
    return bound


def local_process(
    container: Mapping[str, Any],
    pod: Mapping[str, Any],
    *,
    pod_ip: str,
    folders: Mapping[str, Path],
    programs: Programs,
    lookup: Lookup,
) -> LocalProcess:
    """What runs on this machine for `container`, or ContainerError saying why nothing can."""
    mounts = mount_map(container, folders)
    env = {
        key: map_path(value, mounts)
        for key, value in container_env(container, pod, pod_ip, lookup).items()
    }
    command = list(container.get("command") or [])
    args = [map_path(arg, mounts) for arg in container.get("args") or []]
    image = container.get("image", "")
    if command and command[0].startswith(PLATFORM_COMMAND_PREFIX) and "/" not in command[0]:
        script = programs.scripts / command[0]
        if not script.exists():
            raise ContainerError("RunContainerError", f"no platform command {command[0]!r}")
        argv = [str(script), *[map_path(arg, mounts) for arg in command[1:]], *args]
        return LocalProcess(tuple(argv), env)
    if is_llamacpp_server(image) and not command:
        argv = [str(programs.llama_server()), *bind_to_pod(args, pod_ip)]
        return LocalProcess(tuple(argv), env)
    raise ContainerError(
        "ImageNotRunnable",
        f"the test bed runs llama.cpp server images and the platform's own commands, "
        f"not {image!r}" + (f" with command {command!r}" if command else ""),
    )
