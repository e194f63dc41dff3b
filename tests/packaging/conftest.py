"""Fixtures for the packaging tests: the repository's files, the build context that
.dockerignore lets through, and a way to run the Makefile."""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from modelserve.testbed.cache import repo_root
from modelserve.testbed.processes import outside_make


@pytest.fixture(scope="session")
def root() -> Path:
    return repo_root()


@pytest.fixture(scope="session")
def pyproject(root: Path) -> dict[str, Any]:
    with (root / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


@pytest.fixture(scope="session")
def console_scripts(pyproject: dict[str, Any]) -> set[str]:
    return set(pyproject["project"]["scripts"])


@pytest.fixture(scope="session")
def version(pyproject: dict[str, Any]) -> str:
    value: str = pyproject["project"]["version"]
    return value


@pytest.fixture(scope="session")
def source_roots(pyproject: dict[str, Any]) -> list[str]:
    """The folders each holding a portion of the `modelserve` namespace package."""
    roots: list[str] = pyproject["tool"]["setuptools"]["packages"]["find"]["where"]
    return roots


@pytest.fixture(scope="session")
def repository_files(root: Path) -> list[str]:
    """Tracked files and new ones git does not ignore: what a clone holds."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [path for path in listed if (root / path).is_file()]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `**` any number of folders, `*` and `?` within one name."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@pytest.fixture(scope="session")
def in_context(root: Path) -> Callable[[str], bool]:
    """Whether Docker sends a path (relative to the root) in the build context, by the
    rules of .dockerignore: the last pattern that matches the path or one of its folders
    decides, and a pattern with `!` lets it in."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in (root / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            pattern = line.removeprefix("!").strip().strip("/")
            rules.append((line.startswith("!"), _pattern_regex(pattern)))

    def sent(path: str) -> bool:
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for exception, regex in rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not exception
        return not excluded

    return sent


@pytest.fixture
def make(root: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`make ARGS...` in the repository, with `env` added to this environment; returns the
    completed process (stdout and stderr apart), whatever its exit status."""

    def run(
        *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        # --no-print-directory: the output is the recipes' alone.
        return subprocess.run(
            ["make", "--no-print-directory", *args],
            cwd=root,
            env={**outside_make(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
