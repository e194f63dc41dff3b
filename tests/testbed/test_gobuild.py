"""The Go pins: every binary we build is a tool of its wrapper module, at the pinned version."""

from __future__ import annotations

import re

import pytest

from modelserve.testbed.gobuild import MODULES


@pytest.mark.parametrize("folder", sorted(MODULES))
def test_binaries_are_tools_of_the_wrapper_module(folder: str) -> None:
    module = MODULES[folder]
    go_mod = (module.path / "go.mod").read_text()
    tools = set(re.findall(r"^\s*(?:tool\s+)?([\w./-]+)$", go_mod, re.MULTILINE))
    assert set(module.binaries.values()) <= tools
    assert module.version().startswith("v")


def test_kubernetes_staging_modules_match_the_release() -> None:
    module = MODULES["kubernetes"]
    minor = module.version().removeprefix("v1.")
    go_mod = (module.path / "go.mod").read_text()
    staging = re.findall(r"^\s*(k8s\.io/\S+) => \S+ (v\S+)$", go_mod, re.MULTILINE)
    assert len(staging) > 20
    assert {version for _, version in staging} == {f"v0.{minor}"}


def test_kubernetes_version_is_stamped() -> None:
    flags = MODULES["kubernetes"].ldflags()
    assert "k8s.io/component-base/version.gitVersion=v1.35.4" in flags
    assert "k8s.io/component-base/version.gitMinor=35" in flags
