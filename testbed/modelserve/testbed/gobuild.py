"""Build the test bed's Go programs from the wrapper modules pinned in testbed/go/.

Each folder under testbed/go/ is a tiny Go module that requires one upstream
module at an exact version (its go.mod and go.sum are the pins). Binaries land in
the cache under a key made of the pins, the flags and the Go version, so a warm
machine builds nothing and a change of pin builds again.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelserve.testbed.cache import cache_root, content_key, repo_root
from modelserve.testbed.processes import run


@dataclass(frozen=True)
class GoModule:
    """One wrapper module: which upstream module it pins and what it builds from it."""

    folder: str
    module: str
    binaries: dict[str, str]  # binary name -> main package
    # -X name=value, with {version}, {major}, {minor} and {commit} (a pseudo-version's
    # revision) filled in
    version_flags: tuple[str, ...] = field(default=())

    @property
    def path(self) -> Path:
        return repo_root() / "testbed" / "go" / self.folder

    def version(self) -> str:
        """The pinned version of the upstream module, read from our go.mod."""
        text = (self.path / "go.mod").read_text()
        pattern = rf"^(?:require)?\s+{re.escape(self.module)}\s+(v\S+)"
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise ValueError(f"{self.path}/go.mod does not require {self.module}")
        return match.group(1)

    def ldflags(self) -> str:
        version = self.version()
        major, minor = version.lstrip("v").split(".")[:2]
        commit = version.rsplit("-", 1)[-1]
        stamps = [
            flag.format(version=version, major=major, minor=minor, commit=commit)
            for flag in self.version_flags
        ]
        return " ".join(["-s", "-w", *(f"-X {stamp}" for stamp in stamps)])


_KUBE_VERSION = "k8s.io/component-base/version"

MODULES: dict[str, GoModule] = {
    module.folder: module
    for module in (
        GoModule(
            folder="kubernetes",
            module="k8s.io/kubernetes",
            binaries={
                "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
                "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
                "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
                "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            },
            # What `kubectl version` and /version report; without it "v0.0.0-master".
            version_flags=(
                f"{_KUBE_VERSION}.gitVersion={{version}}",
                f"{_KUBE_VERSION}.gitMajor={{major}}",
                f"{_KUBE_VERSION}.gitMinor={{minor}}",
                f"{_KUBE_VERSION}.gitTreeState=clean",
                "k8s.io/client-go/pkg/version.gitVersion={version}",
                "k8s.io/client-go/pkg/version.gitMajor={major}",
                "k8s.io/client-go/pkg/version.gitMinor={minor}",
            ),
        ),
        GoModule(
            folder="etcd",
            module="go.etcd.io/etcd/server/v3",
            binaries={"etcd": "go.etcd.io/etcd/server/v3"},
        ),
        GoModule(
            folder="kwok",
            module="sigs.k8s.io/kwok",
            binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
        ),
        GoModule(
            folder="minio",
            module="github.com/minio/minio",
            binaries={"minio": "github.com/minio/minio"},
        ),
        GoModule(
            folder="helm",
            module="helm.sh/helm/v3",
            binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
            version_flags=("helm.sh/helm/v3/internal/version.version={version}",),
        ),
        GoModule(
            folder="hey",
            module="github.com/rakyll/hey",
            binaries={"hey": "github.com/rakyll/hey"},
        ),
        GoModule(
            folder="mc",
            module="github.com/minio/mc",
            binaries={"mc": "github.com/minio/mc"},
            # What `mc --version` reports; without it "DEVELOPMENT.GOGET". Not the RELEASE.*
            # tag: with one, a bare `mc` checks dl.min.io for updates.
            version_flags=(
                "github.com/minio/mc/cmd.Version={version}",
                "github.com/minio/mc/cmd.ReleaseTag={version}",
                "github.com/minio/mc/cmd.CommitID={commit}",
            ),
        ),
    )
}


@functools.cache
def go_version() -> str:
    return run(["go", "env", "GOVERSION"]).strip()


def install_dir(module: GoModule) -> Path:
    pins = (module.path / "go.mod").read_bytes() + (module.path / "go.sum").read_bytes()
    key = content_key(pins, module.ldflags(), go_version())
    return cache_root() / "bin" / f"{module.folder}-{module.version()}-{key}"


def _complete(target: Path, module: GoModule) -> bool:
    return (target / ".complete").exists() and all(
        (target / name).exists() for name in module.binaries
    )


def build(module: GoModule, *, log: bool = True) -> Path:
    """Build the module's binaries into the cache unless they are already there."""
    target = install_dir(module)
    if _complete(target, module):
        return target
    started = time.monotonic()
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = {"CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
    for name, package in module.binaries.items():
        if log:
            print(f"testbed: building {name} ({module.module} {module.version()})", flush=True)
        run(
            [
                "go",
                "build",
                "-trimpath",
                "-ldflags",
                module.ldflags(),
                "-o",
                staging / name,
                package,
            ],
            cwd=module.path,
            env=env,
        )
    (staging / ".complete").write_text(f"{time.monotonic() - started:.0f}s\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


@functools.cache
def module_dir(folder: str) -> Path:
    """The source of the upstream module that the wrapper `folder` pins, in Go's module
    cache (for the manifests it ships, such as KWOK's CRDs), checked against go.sum."""
    module = MODULES[folder]
    found = json.loads(
        run(
            ["go", "mod", "download", "-json", f"{module.module}@{module.version()}"],
            cwd=module.path,
            env={"GOTOOLCHAIN": "local"},
        )
    )
    return Path(found["Dir"])


@functools.cache
def binary(name: str) -> Path:
    """Path of a built binary, building its module first when needed (once per process:
    kubectl is called for nearly every step of a test)."""
    for module in MODULES.values():
        if name in module.binaries:
            return build(module) / name
    raise KeyError(f"no Go module of the test bed builds {name!r}")
