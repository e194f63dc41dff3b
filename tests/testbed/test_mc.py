"""mc, MinIO's client built from its Go module, copies between the two stores."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from modelserve.testbed.gobuild import MODULES, binary
from modelserve.testbed.objectstores import MinioServer, mc_env
from modelserve.testbed.processes import run


@pytest.fixture(scope="module")
def mc() -> Path:
    return binary("mc")


def test_mc_version_reports_the_pinned_module(mc: Path) -> None:
    assert f"mc version {MODULES['mc'].version()} " in run([mc, "--version"])


def test_mc_copies_a_folder_between_the_stores(
    mc: Path,
    upstream_store: MinioServer,
    platform_store: MinioServer,
    upstream_bucket: str,
    platform_bucket: str,
    tmp_path: Path,
) -> None:
    objects = {
        "models/tiny/config.json": b'{"layers": 2}',
        "models/tiny/weights.bin": os.urandom(3 * 2**20),
    }
    upstream = upstream_store.client()
    for name, payload in objects.items():
        upstream.put_object(upstream_bucket, name, io.BytesIO(payload), len(payload))
    home = tmp_path / "home"
    home.mkdir()
    env = mc_env(("up", upstream_store), ("platform", platform_store), config_dir=tmp_path / "mc")

    run(
        [
            mc,
            "cp",
            "--recursive",
            "--quiet",
            f"up/{upstream_bucket}/models/",
            f"platform/{platform_bucket}/models/",
        ],
        env={**env, "HOME": str(home)},
        timeout=120,
    )

    platform = platform_store.client()
    arrived = {
        item.object_name
        for item in platform.list_objects(platform_bucket, recursive=True)
        if item.object_name is not None
    }
    assert arrived == set(objects)
    for name, payload in objects.items():
        response = platform.get_object(platform_bucket, name)
        try:
            assert response.read() == payload
        finally:
            response.close()
            response.release_conn()
    assert list(home.iterdir()) == []  # nothing under ~/.mc: the aliases came from the env
