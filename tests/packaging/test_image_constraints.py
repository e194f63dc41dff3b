"""docker/constraints.txt: the exact versions the image installs.

Every runtime dependency of pyproject.toml is pinned there at a version its specifier
allows, and so is everything those need, as far as this environment can tell: for a
package installed here at the pinned version, its own requirements must be pinned too.
A package installed here at another version is not followed (its requirements may differ),
so a newer release on a fresh machine does not fail this test.

MODELSERVE_UPDATE_CONSTRAINTS=1 rewrites the file from this environment instead.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

Pins = dict[str, str]


def read_pins(path: Path) -> Pins:
    pins: Pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"{line!r} is not pinned with =="
            pins[canonicalize_name(name)] = pinned.strip()
    return pins


def applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether a requirement holds on the image (Linux, CPython 3.11) for these extras."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def runtime_requirements(pyproject: dict[str, Any]) -> list[Requirement]:
    return [Requirement(text) for text in pyproject["project"]["dependencies"]]


def installed_closure(pyproject: dict[str, Any]) -> Pins:
    """Every package the runtime dependencies need, at the versions installed here."""
    found: Pins = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(str(r)), set(r.extras)) for r in runtime_requirements(pyproject)]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        distribution = metadata.distribution(name)
        found[name] = distribution.version
        for text in distribution.requires or []:
            needed = Requirement(text)
            if applies(needed, extras):
                todo.append((needed, set(needed.extras)))
    return found


@pytest.fixture(scope="module")
def constraints(root: Path) -> Path:
    return root / "docker" / "constraints.txt"


@pytest.fixture(scope="module")
def pins(constraints: Path, pyproject: dict[str, Any]) -> Pins:
    if os.environ.get("MODELSERVE_UPDATE_CONSTRAINTS"):
        text = constraints.read_text()
        header = [line for line in text.splitlines() if line.startswith("#")]
        closure = installed_closure(pyproject)
        body = [f"{name}=={closure[name]}" for name in sorted(closure)]
        constraints.write_text("\n".join([*header, *body]) + "\n")
    return read_pins(constraints)


def test_every_runtime_dependency_is_pinned_where_pyproject_allows(
    pins: Pins, pyproject: dict[str, Any]
) -> None:
    for requirement in runtime_requirements(pyproject):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in docker/constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} is outside pyproject's {requirement}"
        )


def test_what_the_pinned_packages_need_is_pinned_too(pins: Pins, pyproject: dict[str, Any]) -> None:
    extras: dict[str, set[str]] = {}
    for requirement in runtime_requirements(pyproject):
        extras[canonicalize_name(requirement.name)] = set(requirement.extras)
    unpinned: list[str] = []
    for name, pinned in pins.items():
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if distribution.version != pinned:
            continue
        for text in distribution.requires or []:
            needed = Requirement(text)
            if applies(needed, extras.get(name, set())):
                if canonicalize_name(needed.name) not in pins:
                    unpinned.append(f"{needed.name} (for {name})")
                extras.setdefault(canonicalize_name(needed.name), set()).update(needed.extras)
    assert not unpinned, f"needed but not pinned: {unpinned}"


def test_nothing_is_pinned_that_the_runtime_does_not_need(
    pins: Pins, pyproject: dict[str, Any]
) -> None:
    closure = installed_closure(pyproject)
    # Only where this environment has exactly the pinned versions can it tell.
    if any(closure.get(name) != pinned for name, pinned in pins.items()):
        pytest.skip("this environment has other versions than docker/constraints.txt")
    assert set(pins) == set(closure)
