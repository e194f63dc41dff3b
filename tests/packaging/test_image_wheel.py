"""What the Dockerfile's builder and runtime stages do, done here without Docker: build
the wheel from exactly the files of the build context, install it (not editable) into a
fresh environment, and load every console script from there."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def wheel(
    root: Path,
    repository_files: list[str],
    in_context: Callable[[str], bool],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The wheel `pip wheel .` builds in the builder stage, from a copy of the context."""
    context = tmp_path_factory.mktemp("context")
    for path in repository_files:
        if in_context(path):
            target = context / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / path, target)
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, context],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = out.glob("modelserve-*.whl")
    return built


def wheel_entry_points(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(name).decode())
    return dict(parser["console_scripts"])


def test_the_wheel_declares_every_console_script_of_pyproject(
    wheel: Path, pyproject: dict[str, Any], version: str
) -> None:
    assert wheel.name == f"modelserve-{version}-py3-none-any.whl"
    assert wheel_entry_points(wheel) == pyproject["project"]["scripts"]


def test_the_wheel_holds_every_module_and_data_file_of_the_source_roots(
    wheel: Path, root: Path, source_roots: list[str]
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    data = ("py.typed", ".yaml", ".sql", ".mako", ".ini")
    for source in source_roots:
        for path in (root / source / "modelserve").rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(root / source).as_posix()
                if path.suffix == ".py" or path.name.endswith(data):
                    assert relative in names, f"{relative} is not in the wheel"


def test_every_console_script_loads_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel],
        check=True,
        capture_output=True,
        text=True,
    )
    # The dependencies come from this environment, appended after the fresh one's own
    # site-packages (its .pth files, among them the editable install of this checkout,
    # are not read from there), so `modelserve` can only come from the wheel.
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    scripts = wheel_entry_points(wheel)
    for script in scripts:
        assert (venv / "bin" / script).exists(), script
    check = (
        "import importlib, sys\n"
        "for target in sys.argv[1:]:\n"
        "    module, _, attr = target.partition(':')\n"
        "    loaded = importlib.import_module(module)\n"
        "    assert callable(getattr(loaded, attr)), target\n"
        f"    assert loaded.__file__.startswith({str(venv)!r}), loaded.__file__\n"
    )
    result = subprocess.run(
        [python, "-c", check, *scripts.values()], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
