"""`make dev`'s platform for the pages whose commands the tests run (quick start,
registry): started once for every page that needs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelserve.testbed.doc_scripts import DevPlatform, dev_platform

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevPlatform]:
    with dev_platform(ROOT, tmp_path_factory.mktemp("make-dev")) as platform:
        yield platform
