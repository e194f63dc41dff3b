"""Who sees which download and model, and what name a download decision judges."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService

pytestmark = [pytest.mark.postgres, pytest.mark.minio]


def test_users_see_only_their_own_downloads_and_models(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    upstream_store.put(upstream_bucket, "roots/model.gguf", b"x" * 10)
    assert admin.post("/download/roots").status_code == 202
    assert wait_finished(admin, "roots")["state"] == "ready"
    bob = client("bob")

    # Bob asked for nothing: nothing of anyone else's is his to see, and the answer is the
    # one for an id that does not exist.
    for path, code in (
        ("/status/roots", "download_not_found"),
        ("/models/roots", "model_not_found"),
    ):
        answer = bob.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"]["code"] == code
        assert bob.get(path.replace("roots", "nothing")).json()["error"]["code"] == code
    assert bob.get("/models").json() == []
    assert bob.get("/downloads").json() == []
    for action in ("cancel", "retry"):
        answer = bob.post(f"/download/roots/{action}")
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "download_not_found"

    # Admins and services see every one.
    service = client("service:gateway", roles=("service",))
    assert [m["id"] for m in admin.get("/models").json()] == ["roots"]
    assert [m["id"] for m in service.get("/models").json()] == ["roots"]
    assert service.get("/models/roots").status_code == 200
    assert service.get("/status/roots").status_code == 200


@pytest.fixture
def as_user(
    contract_service: RunningService,
    start_download: Callable[..., RunningService],
    signer: TokenSigner,
) -> Iterator[Callable[[str], httpx.Client]]:
    """`as_user(subject)`: a client of a download service that asks the contract service."""
    service = start_download(DOWNLOAD_CONTRACT_URL=contract_service.url)
    clients: list[httpx.Client] = []

    def make(subject: str) -> httpx.Client:
        token = signer.sign(subject, roles=())
        clients.append(
            httpx.Client(
                base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
        )
        return clients[-1]

    yield make
    for made in clients:
        made.close()


def allow(
    contract_service: RunningService, signer: TokenSigner, user: str, models: list[str]
) -> None:
    root = signer.sign("root", roles=("admin",))
    answer = httpx.put(
        f"{contract_service.url}/contracts/user/{user}",
        json={"downloads": True, "models": models},
        headers={"Authorization": f"Bearer {root}"},
    )
    assert answer.status_code == 200, answer.text


def test_a_user_who_asked_for_a_model_sees_it(
    as_user: Callable[[str], httpx.Client],
    contract_service: RunningService,
    signer: TokenSigner,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    upstream_store.put(upstream_bucket, "smol-a/model.gguf", b"x" * 10)
    for user in ("alice", "bob", "carol"):
        allow(contract_service, signer, user, ["smol-*"])
    alice, bob, carol = as_user("alice"), as_user("bob"), as_user("carol")

    assert alice.post("/download/smol-a").status_code == 202
    assert wait_finished(alice, "smol-a")["state"] == "ready"
    assert [m["id"] for m in alice.get("/models").json()] == ["smol-a"]
    assert carol.get("/status/smol-a").status_code == 404
    assert carol.get("/models").json() == []

    # Bob asks for the same model (his contract allows it): it is his too from then on,
    # though only alice, who started it, may cancel or retry it.
    again = bob.post("/download/smol-a")
    assert again.status_code == 200, again.text
    assert bob.get("/status/smol-a").json()["state"] == "ready"
    assert [m["id"] for m in bob.get("/models").json()] == ["smol-a"]
    assert bob.get("/models/smol-a").status_code == 200
    assert [j["model_id"] for j in bob.get("/downloads").json()] == ["smol-a"]
    assert bob.post("/download/smol-a/retry").json()["error"]["code"] == "not_owner"
    assert carol.get("/models/smol-a").status_code == 404


def test_the_decision_judges_the_source_not_the_name_the_caller_gives(
    as_user: Callable[[str], httpx.Client],
    contract_service: RunningService,
    signer: TokenSigner,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    upstream_store.put(upstream_bucket, "org/evil-model.gguf", b"e" * 10)
    upstream_store.put(upstream_bucket, "org/smol-good.gguf", b"s" * 10)
    upstream_store.put(upstream_bucket, "evil-folder/model.gguf", b"f" * 10)
    allow(contract_service, signer, "alice", ["smol*"])
    alice = as_user("alice")

    for body in (
        {"key": "org/evil-model.gguf", "name": "smol-ok"},
        {"key": "org/evil-model.gguf", "name": "smol-ok", "model_id": "smol-ok"},
        {"prefix": "evil-folder", "name": "smol-ok", "model_id": "smol-folder"},
    ):
        refused = alice.post("/downloads", json={"bucket": upstream_bucket, **body})
        assert refused.status_code == 403, (body, refused.text)
        assert refused.json()["error"]["code"] == "model_not_allowed"
    refused = alice.post("/download/evil-folder", json={"name": "smol-ok"})
    assert refused.status_code == 403, refused.text
    assert alice.get("/downloads").json() == []

    # What the source is named decides, whatever the caller calls it.
    accepted = alice.post(
        "/downloads",
        json={"bucket": upstream_bucket, "key": "org/smol-good.gguf", "name": "my model"},
    )
    assert accepted.status_code == 202, accepted.text
    assert wait_finished(alice, accepted.json()["model_id"])["state"] == "ready"

    # A name no source can have (a NUL byte) is judged escaped, then refused as a bad key.
    bad = alice.post("/downloads", json={"bucket": upstream_bucket, "key": "smol\x00.gguf"})
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["code"] == "invalid_key"


def test_a_model_id_of_another_source_is_not_taken_over(
    as_user: Callable[[str], httpx.Client],
    contract_service: RunningService,
    signer: TokenSigner,
    upstream_store: MinioServer,
    upstream_bucket: str,
    wait_finished: Callable[..., dict[str, Any]],
) -> None:
    upstream_store.put(upstream_bucket, "smol-alice/weights.gguf", b"a" * 10)
    upstream_store.put(upstream_bucket, "org/smol-bob.gguf", b"b" * 10)
    allow(contract_service, signer, "alice", ["smol-*"])
    allow(contract_service, signer, "bob", ["smol-*"])
    alice, bob = as_user("alice"), as_user("bob")
    assert alice.post("/download/smol-alice").status_code == 202
    assert wait_finished(alice, "smol-alice")["state"] == "ready"
    assert alice.post("/download/smol-missing").status_code == 202  # nothing upstream
    assert wait_finished(alice, "smol-missing")["state"] == "failed"

    # Bob names alice's ids for a source of his own: neither her ready model nor her
    # failed one becomes his, nor does he get to see them.
    for model_id in ("smol-alice", "smol-missing"):
        body = {"bucket": upstream_bucket, "key": "org/smol-bob.gguf", "model_id": model_id}
        taken = bob.post("/downloads", json=body)
        assert taken.status_code == 409, taken.text
        assert taken.json()["error"]["code"] == "model_id_taken"
        assert bob.get(f"/status/{model_id}").status_code == 404
        assert alice.get(f"/status/{model_id}").json()["requested_by"] == "alice"
    assert bob.get("/downloads").json() == []
    assert alice.get("/models/smol-alice").json()["source"].endswith("/smol-alice/")
