"""Every command of docs/quickstart.md is run.

Local mode for real: `modelserve-testbed up` (what `make dev` runs) on free ports, then the
page's shell blocks in one bash, in order, with `curl` failing on any HTTP error. k3d mode
as far as this machine allows: no Docker engine, so each `make` target must exist, the helm
command must be the chart's, and the names the commands use must be in the rendered chart.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelserve.testbed.doc_scripts import (
    Block,
    DevPlatform,
    json_lines,
    section_text,
    shell_blocks,
)
from modelserve.testbed.gobuild import binary
from modelserve.testbed.processes import outside_make

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
LOCAL = "Local mode"
K3D = "k3d mode"
# Programs the k3d section may call; each of its commands starts with one of these.
K3D_PROGRAMS = {"make", "helm", "kubectl", "export", "curl", "ADMIN_PASSWORD", "TOKEN"}


def dry_run(target: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`make -n TARGET` in the repository: what it would run (stdout and stderr apart)."""
    return subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        env=outside_make(),
    )


def test_the_page_has_both_modes() -> None:
    blocks = shell_blocks(QUICKSTART.read_text())
    assert {block.section for block in blocks} >= {LOCAL, K3D}
    assert blocks[0] == Block(LOCAL, LOCAL, "make dev")
    assert [block.text for block in blocks if block.section not in (LOCAL, K3D)] == []


def test_make_dev_is_modelserve_testbed_up() -> None:
    """The local test below starts `modelserve-testbed up` itself, on free ports."""
    planned = dry_run("dev").stdout
    assert planned.strip().splitlines()[-1].endswith("/modelserve-testbed up")


# --- local mode, for real -------------------------------------------------------------------


def test_local_mode_runs_as_written(dev: DevPlatform, tmp_path: Path) -> None:
    blocks = [block for block in shell_blocks(QUICKSTART.read_text()) if block.section == LOCAL]
    assert blocks[0].text == "make dev"
    blocks = blocks[1:]
    assert "source .dev/env" in blocks[0].text

    by_heading = dev.run(blocks, tmp_path)

    nodes = by_heading[LOCAL].split()
    assert {"cpu-0", "gpu-a100-0", "gpu-l4-0", "smollm2-external", "llamacpp"} <= set(nodes)

    (me,) = json_lines(by_heading["1. Sign in"])
    assert me["username"] == "admin" and "admin" in me["roles"]

    models, chat = json_lines(by_heading["2. Chat through the gateway"])
    assert "smollm2-135m-instruct" in [model["id"] for model in models["data"]]
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["content"].strip()

    (routed,) = json_lines(by_heading["2b. Chat through Traefik's per-server route"])
    assert routed["object"] == "chat.completion"
    assert routed["choices"][0]["message"]["content"].strip()

    (models,) = json_lines(by_heading["3. An API key for a program"])
    assert "smollm2-135m-instruct" in [model["id"] for model in models["data"]]

    queued, job, records = json_lines(by_heading["4. Download a model into the platform"])
    assert queued["state"] in ("queued", "transferring", "verifying", "ready")
    assert job["state"] == "ready"
    # The session's platform is shared: tests/client registers versions of its own on it.
    downloaded = [record for record in records if record.get("origin") != "register"]
    assert [record["name"] for record in downloaded] == ["SmolLM2-135M-Instruct"]
    assert downloaded[0]["uri"].startswith("s3://inference-models/")

    served = by_heading["5. Serve it on a GPU node"]
    assert "gpu-l4-0" in served
    status, stopped = json_lines(served)
    assert (status["status"], status["model"], status["runtime"]) == (
        "Ready",
        "smollm2-l4",
        "llamacpp",
    )
    assert stopped["status"] == "Stopping"

    applied = by_heading["6. Apply a ModelServe with kubectl"]
    assert re.search(r"smollm2-cpu\s+llamacpp\s+\S+\s+\d+\s+\d+\s+Ready", applied), applied


# --- k3d mode, as far as this machine goes ----------------------------------------------------


def make_targets(markdown: str) -> list[str]:
    """Every `make TARGET` of the k3d section, in its blocks and in its text."""
    text = section_text(markdown, K3D)
    return sorted(set(re.findall(r"(?:^|`)make ([a-z][a-z-]*)", text, re.MULTILINE)))


def test_k3d_commands_are_known_programs() -> None:
    blocks = [block for block in shell_blocks(QUICKSTART.read_text()) if block.section == K3D]
    assert blocks
    for block in blocks:
        for command in block.commands():
            assert command.split("=", 1)[0].split()[0] in K3D_PROGRAMS, command


def test_k3d_make_targets_exist() -> None:
    targets = make_targets(QUICKSTART.read_text())
    assert {"all", "check-deps", "status", "port-forward", "stop", "clean"} <= set(targets)
    missing = []
    for target in targets:
        planned = dry_run(target, check=False)
        if planned.returncode != 0:
            missing.append(f"{target}: {planned.stderr.strip()}")
    assert missing == []


def rendered_chart() -> list[dict[str, Any]]:
    chart = ROOT / "charts" / "modelserve"
    if not (chart / "Chart.yaml").exists():
        pytest.skip("charts/modelserve is not there yet")
    rendered = subprocess.run(
        [binary("helm"), "template", "modelserve", chart, "-n", "modelserve"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def test_k3d_helm_command_is_what_make_all_runs() -> None:
    markdown = QUICKSTART.read_text()
    helm = "helm upgrade --install modelserve charts/modelserve -n modelserve --create-namespace"
    assert helm in section_text(markdown, K3D)
    planned = dry_run("services-deploy").stdout
    assert "upgrade --install modelserve charts/modelserve" in planned
    assert "--namespace modelserve --create-namespace" in planned


def test_k3d_names_are_the_charts() -> None:
    """The Secret and key the page reads the admin's password from, the gateway's Service
    and port, and a Traefik route to the gateway are in the rendered chart."""
    markdown = section_text(QUICKSTART.read_text(), K3D)
    objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in rendered_chart()}
    found = re.findall(r'get secret ([a-z0-9-]+) .*?index .data "([a-z-]+)"', markdown, re.DOTALL)
    assert found
    for name, key in found:
        assert key in objects[("Secret", name)]["data"], (name, key)
    gateway = objects[("Service", "modelserve-gateway")]
    assert 8200 in [port["port"] for port in gateway["spec"]["ports"]]
    routes = [doc for (kind, _), doc in objects.items() if kind in ("IngressRoute", "Ingress")]
    assert any("modelserve-gateway" in json.dumps(route["spec"]) for route in routes), (
        "no Traefik route to the gateway in the chart"
    )
