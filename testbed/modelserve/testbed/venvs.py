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
    env: Mapping[str, str] | None = None,
    note: str = "",
) -> Path:
    """The virtual environment of `name` at `version`, `pip install`ed with
    `requirements` the first time; `note` tells whoever waits how long that takes."""
    venv = cache_root() / "venvs" / f"{name}-{version}-{content_key(version, sys.version)}"
    if not (venv / ".complete").exists():
        print(f"testbed: installing {name} {version} once per machine{note}", flush=True)
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", venv])
        run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", *requirements], env=env)
        (venv / ".complete").write_text(f"{time.monotonic() - started:.0f}s\n")
    return venv
