"""The service's background loops survive the outages of what they depend on: a loop that
fails is logged and started again, and picks up once the outage is over."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelserve.common.store_tags import SHA256_TAG
from modelserve.common.tokens import TokenSigner
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.postgres import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

FAST_RESTARTS = {"DOWNLOAD_RESTART_SECONDS": "0.5", "DOWNLOAD_RESTART_MAX_SECONDS": "2"}


def admin_of(service: RunningService, signer: TokenSigner) -> httpx.Client:
    token = signer.sign("root", roles=("admin",))
    return httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def logged(service: RunningService, text: str) -> bool:
    return text in service.process.log_path.read_text(errors="replace")


def test_a_loop_failing_in_a_store_outage_is_logged_and_restarted(
    start_download: Callable[..., RunningService],
    signer: TokenSigner,
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    first = start_download()
    upstream_store.put(upstream_bucket, "before/weights.gguf", os.urandom(1 << 20))
    with admin_of(first, signer) as admin:
        assert admin.post("/download/before").status_code == 202
        assert wait_finished(admin, "before")["state"] == "ready"
    first.stop()
    # A file to back-fill (as one stored before the service tagged files).
    key = "models/before/weights.gguf"
    platform_store.client().delete_object_tags(platform_bucket, key)

    # The platform store goes away; a replica starts meanwhile, and its back-fill fails.
    platform_store.process.stop()
    try:
        second = start_download(**FAST_RESTARTS)
        wait_for(
            lambda: logged(second, "object tag back-fill failed"),
            timeout=60,
            what="the failed back-fill in the log",
        )
    finally:
        platform_store.process.start()
        platform_store.process.wait_until(
            lambda: platform_store.client().bucket_exists(platform_bucket), 60, "live again"
        )

    # Once the store is back, the back-fill is done and the workers still take jobs.
    wait_for(
        lambda: dict(platform_store.client().get_object_tags(platform_bucket, key) or {}),
        timeout=60,
        what="the back-fill to tag the file",
    )
    upstream_store.put(upstream_bucket, "after/weights.gguf", os.urandom(1 << 20))
    with admin_of(second, signer) as admin:
        assert admin.post("/download/after").status_code == 202
        assert wait_finished(admin, "after", timeout=60)["state"] == "ready"
    tags = platform_store.client().get_object_tags(platform_bucket, "models/after/weights.gguf")
    assert SHA256_TAG in dict(tags or {})


def test_downloads_go_on_after_a_database_outage(
    start_download: Callable[..., RunningService],
    signer: TokenSigner,
    postgres: PostgresServer,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    service = start_download(**FAST_RESTARTS)
    upstream_store.put(upstream_bucket, "m/weights.gguf", os.urandom(1 << 20))
    with admin_of(service, signer) as admin:
        postgres.pause()
        try:
            answer = admin.get("/downloads")
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "database_unavailable"
            # The workers' loops meet the outage too (they claim jobs every poll).
            wait_for(
                lambda: logged(service, "no jobs claimed"),
                timeout=60,
                what="the workers to meet the outage",
            )
        finally:
            postgres.resume()
        wait_for(
            lambda: admin.post("/download/m").status_code == 202,
            timeout=60,
            what="the service to take requests again",
        )
        assert wait_finished(admin, "m", timeout=60)["state"] == "ready"
