"""helm against the test bed: the pinned binary, a cluster's kubeconfig, a home of its own.

helm keeps a cache, a configuration and repositories under $HOME; here each `Helm` keeps
them in its own folder, so tests neither read nor change the user's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelserve.testbed.cache import repo_root
from modelserve.testbed.processes import run

CHART = repo_root() / "charts" / "modelserve"


@dataclass(frozen=True)
class Helm:
    """`helm` with `kubeconfig` (None: commands that need no cluster) and `home`."""

    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def __call__(self, *args: str, timeout: float = 600) -> str:
        env = {
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return run([self.binary, *args], env=env, timeout=timeout)

    def values_file(self, values: Mapping[str, Any], name: str = "values") -> Path:
        """`values` as a file for `-f` (JSON is YAML)."""
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / f"{name}.yaml"
        path.write_text(json.dumps(values))
        return path

    def template(
        self,
        release: str,
        namespace: str,
        values: Mapping[str, Any] | None = None,
        *,
        chart: Path = CHART,
        extra: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """The objects `helm template` renders (hooks and tests included)."""
        args = ["template", release, str(chart), "--namespace", namespace, *extra]
        if values:
            args += ["-f", str(self.values_file(values, f"{release}-template"))]
        return [doc for doc in yaml.safe_load_all(self(*args)) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`) among rendered objects."""
    found = [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    if len(found) != 1:
        raise LookupError(f"{len(found)} objects of kind {kind} named {name}, not one")
    return found[0]
