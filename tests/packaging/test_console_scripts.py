"""Every command the image is asked to run (by the Dockerfile, the helm chart or the
operator's init step) is a console script that pyproject.toml declares, so the image
runs the same commands `make dev` runs (tests/services/test_entrypoints.py starts them).
The Dockerfile's own commands are checked in test_dockerfile.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.common.modelserve import ModelServe
from modelserve.operator.builders import build_deployment
from modelserve.operator.settings import OperatorSettings
from modelserve.testbed.processes import run

IMAGE_REPOSITORY = "modelserve/modelserve"


def containers(manifest: Any) -> Iterator[dict[str, Any]]:
    """Every container and init container of a rendered object, wherever it nests."""
    if isinstance(manifest, dict):
        for key, value in manifest.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from containers(value)
    elif isinstance(manifest, list):
        for item in manifest:
            yield from containers(item)


def test_the_operator_fetches_models_with_this_image_and_a_console_script(
    version: str, console_scripts: set[str]
) -> None:
    settings = OperatorSettings()
    assert settings.fetch_image == f"{IMAGE_REPOSITORY}:{version}"
    ms = ModelServe.from_body(
        {
            "metadata": {"name": "m", "namespace": "team-a", "uid": "uid-1", "generation": 1},
            "spec": {"runtime": "llamacpp", "model": {"uri": "s3://models/m.gguf"}},
        }
    )
    pod = build_deployment(ms, settings)["spec"]["template"]["spec"]
    ours = [c for c in pod.get("initContainers", []) if c["image"] == settings.fetch_image]
    assert ours, "the deployment has no init container with the ModelServe image"
    for container in ours:
        assert container["command"][0] in console_scripts


@pytest.mark.skipif(
    not Path(__file__).parents[2].joinpath("charts/modelserve/values.yaml").exists(),
    reason="the chart is not written yet",
)
def test_every_container_of_the_chart_with_this_image_runs_a_console_script(
    root: Path, helm: Path, console_scripts: set[str]
) -> None:
    rendered = run(
        [
            helm,
            "template",
            "modelserve",
            root / "charts" / "modelserve",
            "--namespace",
            "modelserve",
            "--set",
            f"image.repository={IMAGE_REPOSITORY}",
        ]
    )
    commands: set[str] = set()
    for manifest in yaml.safe_load_all(rendered):
        for container in containers(manifest):
            if container.get("image", "").startswith(f"{IMAGE_REPOSITORY}:"):
                command = container.get("command") or ["modelserve-gateway"]  # the image's CMD
                commands.add(command[0])
    # The image's Python itself (the chart's `helm test` hook asks the gateway for /health
    # with the standard library) and every console script; nothing else.
    assert commands <= console_scripts | {"python"}
    # The five components run from the image.
    assert {
        "modelserve-operator",
        "modelserve-gateway",
        "modelserve-contract",
        "modelserve-download",
        "modelserve-jobs",
    } <= commands
