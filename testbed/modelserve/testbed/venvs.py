"""Tools the test bed or a benchmark runs beside the platform (llama.cpp's server,
LiteLLM's proxy, its_hub's server), each in a virtual environment of its own, made once
per version and Python in the cache: their dependencies never meet the project's."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from modelserve.testbed.cache import cache_root, content_key
from modelserve.testbed.processes import run


def tool_venv(
    name: str,
    version: str,
    requirements: Sequence[str],
    *,
    hashes: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    note: str = "",
) -> Path:
    """The virtual environment of `name` at `version`, `pip install`ed with
    `requirements` the first time; `note` tells whoever waits how long that takes.

    `hashes` maps each of `requirements` (`package==version`) to the sha256 of the one
    file pip may install for it; pip then runs with `--require-hashes`, so every package
    it installs, dependencies included, must be listed."""
    # What the build is told (compiler flags) makes another build: it is part of the key.
    built_with = sorted(f"{k}={v}" for k, v in (env or {}).items())
    key = content_key(version, sys.version, *sorted((hashes or {}).values()), *built_with)
    venv = cache_root() / "venvs" / f"{name}-{version}-{key}"
    if not (venv / ".complete").exists():
        print(f"testbed: installing {name} {version} once per machine{note}", flush=True)
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", venv])
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        if hashes is None:
            run([*pip, *requirements], env=env)
        else:
            listed = _hashed_requirements(venv, requirements, hashes)
            run([*pip, "--require-hashes", "--requirement", str(listed)], env=env)
        (venv / ".complete").write_text(f"{time.monotonic() - started:.0f}s\n")
    return venv


def _hashed_requirements(
    venv: Path, requirements: Sequence[str], hashes: Mapping[str, str]
) -> Path:
    """A requirements file with each requirement's hash: pip takes `--hash` only there."""
    path = venv / "requirements.txt"
    lines = [f"{requirement} --hash=sha256:{hashes[requirement]}" for requirement in requirements]
    path.write_text("\n".join(lines) + "\n")
    return path
