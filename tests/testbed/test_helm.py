"""helm, built from its Go module, runs."""

from __future__ import annotations

from pathlib import Path

from modelserve.testbed.gobuild import MODULES
from modelserve.testbed.processes import run


def test_helm_version_reports_the_pinned_release(helm: Path) -> None:
    version = run([helm, "version", "--template", "{{ .Version }}"]).strip()
    assert version == MODULES["helm"].version()
