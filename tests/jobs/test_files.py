"""OpenAI Files through the real gateway and jobs service (`job_platform`): the official
`openai` client uploads, lists, reads and deletes files; a curl-like multipart upload
(file before purpose, a last line without its newline) and its download stream through
the gateway unchanged; a user sees only their own files; errors are in OpenAI's shape."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from modelserve.testbed.job_platform import JobPlatform
from modelserve.testbed.platform import RunningService

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

CONTENT = b'{"custom_id": "a"}\n{"custom_id": "b"}\n'


def openai_client(platform: JobPlatform, name: str) -> openai.OpenAI:
    platform.user(name).close()
    return openai.OpenAI(
        base_url=platform.gateway.url + "/v1", api_key=platform.token(name), max_retries=0
    )


def test_the_openai_client_uploads_lists_reads_and_deletes_a_file(
    job_platform: JobPlatform,
) -> None:
    client = openai_client(job_platform, "fiona")
    made = client.files.create(file=("requests.jsonl", CONTENT), purpose="batch")
    assert made.id.startswith("file-") and made.object == "file"
    assert (made.bytes, made.filename, made.purpose, made.status) == (
        len(CONTENT),
        "requests.jsonl",
        "batch",
        "processed",
    )
    assert client.files.retrieve(made.id) == made
    assert client.files.content(made.id).content == CONTENT
    second = client.files.create(file=("more.jsonl", b"{}\n"), purpose="batch")

    listed = client.files.list()
    assert [f.id for f in listed.data[:2]] == [second.id, made.id]  # newest first
    page = client.files.list(limit=1, order="asc")
    assert page.has_more and page.data[0].id == made.id
    following = client.files.list(limit=1, order="asc", after=made.id)
    assert [f.id for f in following.data] == [second.id]
    assert [f.id for f in client.files.list(purpose="batch_output").data] == []
    # Any purpose OpenAI names lists, even one this service never holds.
    assert client.files.list(purpose="fine-tune").data == []

    deleted = client.files.delete(made.id)
    assert (deleted.id, deleted.deleted) == (made.id, True)
    with pytest.raises(openai.NotFoundError) as gone:
        client.files.retrieve(made.id)
    assert gone.value.code == "file_not_found"
    assert made.id not in {f.id for f in client.files.list().data}


def test_a_purpose_other_than_batch_is_refused_in_openai_shape(
    job_platform: JobPlatform,
) -> None:
    client = openai_client(job_platform, "fiona")
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("x.jsonl", CONTENT), purpose="fine-tune")
    assert refused.value.code == "invalid_purpose"
    error = refused.value.body
    assert isinstance(error, dict) and error["param"] == "purpose"
    assert error["type"] == "invalid_request_error" and "batch" in error["message"]


def test_what_no_route_takes_under_v1_is_answered_in_openai_shape(
    job_platform: JobPlatform,
) -> None:
    """A method a route lacks (405) and a path no route has (404), through the gateway:
    OpenAI's shape under /v1, as for the routes' own errors; the platform's elsewhere."""
    with job_platform.user("fiona") as fiona:
        for method, path, status, kind in (
            ("DELETE", "/v1/batches/batch_" + "0" * 24, 405, "invalid_request_error"),
            ("GET", "/v1/batches/batch_" + "0" * 24 + "/cancel", 405, "invalid_request_error"),
            ("GET", "/v1/files/file-" + "0" * 24 + "/more", 404, "invalid_request_error"),
        ):
            answer = fiona.request(method, path)
            assert answer.status_code == status, (path, answer.text)
            error = answer.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, (path, error)
            assert error["type"] == kind and error["code"], (path, error)
        platform = fiona.get("/jobs/not-a-route/at-all")
        assert platform.status_code == 404 and set(platform.json()["error"]) == {
            "code",
            "message",
        }


def curl_form(boundary: str, filename: str, content: bytes) -> Iterator[bytes]:
    """The body `curl -F file=@<filename> -F purpose=batch` sends: the file part before
    `purpose` (the openai client sends `purpose` first), here in chunks of 1 MiB."""
    yield (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for start in range(0, len(content), 1 << 20):
        yield content[start : start + (1 << 20)]
    yield (
        f"\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="purpose"\r\n\r\n'
        f"batch\r\n--{boundary}--\r\n"
    ).encode()


def test_a_curl_upload_and_download_stream_through_the_gateway(
    job_platform: JobPlatform,
) -> None:
    # The file part first, sent chunked (no Content-Length), CRLF line ends and a last
    # line without its newline; large enough for two parts in the store (8 MiB each) and
    # many reads.
    lines = [f'{{"custom_id": "r{i}", "pad": "{"x" * 200}"}}' for i in range(40_000)]
    content = "\r\n".join(lines).encode()
    boundary = "curl-like-boundary-5f2a"
    with job_platform.user("fiona") as fiona:
        made = fiona.post(
            "/v1/files",
            content=curl_form(boundary, "big.jsonl", content),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert made.status_code == 200, made.text
        body = made.json()
        assert body["bytes"] == len(content) > 8 << 20
        with fiona.stream("GET", f"/v1/files/{body['id']}/content") as download:
            assert download.status_code == 200
            assert download.headers["content-length"] == str(len(content))
            assert "big.jsonl" in download.headers["content-disposition"]
            received = b"".join(download.iter_bytes())
        assert received == content
        # Not multipart at all: a clear 400 in OpenAI's shape, not a 422.
        wrong = fiona.post("/v1/files", json={"purpose": "batch"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["type"] == "invalid_request_error"


def test_a_user_sees_only_their_own_files_and_admins_all(job_platform: JobPlatform) -> None:
    fiona = openai_client(job_platform, "fiona")
    made = fiona.files.create(file=("mine.jsonl", CONTENT), purpose="batch")
    george = openai_client(job_platform, "george")
    for call in (george.files.retrieve, george.files.content, george.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(made.id)
    assert made.id not in {f.id for f in george.files.list().data}
    # Another's file as a cursor is as unknown as a file that never was: george's page
    # after it says nothing of when it was made, or that it exists.
    george.files.create(file=("his.jsonl", CONTENT), purpose="batch")
    for order in ("asc", "desc"):
        foreign = george.files.list(after=made.id, order=order)
        unknown = george.files.list(after="file-" + "0" * 24, order=order)
        assert [f.id for f in foreign.data] == [f.id for f in unknown.data] == []
    with job_platform.admin() as admin:
        seen = admin.get(f"/v1/files/{made.id}")
        assert seen.status_code == 200 and seen.json()["id"] == made.id
        unauthenticated = httpx.get(f"{job_platform.gateway.url}/v1/files", timeout=30)
    assert unauthenticated.status_code == 401
    assert fiona.files.retrieve(made.id).id == made.id


@contextlib.contextmanager
def replica_of_its_own(
    job_platform: JobPlatform,
    start_jobs: Callable[..., RunningService],
    user: str,
    **settings: str,
) -> Iterator[httpx.Client]:
    """A client of `user` for a jobs replica of its own, with `settings` (JOBS_*) over the
    platform's store."""
    store = job_platform.store
    replica = start_jobs(
        JOBS_STORE_ENDPOINT=store.endpoint,
        JOBS_STORE_ACCESS_KEY=store.access_key,
        JOBS_STORE_SECRET_KEY=store.secret_key,
        JOBS_STORE_BUCKET=job_platform.bucket,
        **settings,
    )
    job_platform.user(user).close()
    headers = {"Authorization": f"Bearer {job_platform.token(user)}"}
    with httpx.Client(base_url=replica.url, headers=headers, timeout=60) as client:
        yield client


def test_a_file_over_the_size_limit_is_refused_and_leaves_nothing(
    job_platform: JobPlatform, start_jobs: Callable[..., RunningService]
) -> None:
    """A replica of its own with a 1000-byte limit (the platform's is OpenAI's 200 MB)."""
    with replica_of_its_own(job_platform, start_jobs, "hana", JOBS_FILES_MAX_BYTES="1000") as (
        replica
    ):
        # Its Content-Length is within the form's margin: the limit is found while the
        # body streams in, and the upload to the store is aborted.
        big = replica.post(
            "/v1/files", files={"file": ("big.jsonl", CONTENT * 100)}, data={"purpose": "batch"}
        )
        assert big.status_code == 413, big.text
        assert big.json()["error"]["code"] == "file_too_large"
        fits = replica.post(
            "/v1/files", files={"file": ("ok.jsonl", CONTENT)}, data={"purpose": "batch"}
        )
        assert fits.status_code == 200, fits.text
        listed = replica.get("/v1/files").json()
    assert [f["filename"] for f in listed["data"]] == ["ok.jsonl"]
    store = job_platform.store.client()
    kept = store.list_objects(job_platform.bucket, prefix="files/hana/", recursive=True)
    assert [item.object_name for item in kept] == [f"files/hana/{fits.json()['id']}"]


def test_a_form_of_many_fields_is_refused_before_it_is_read_whole(
    job_platform: JobPlatform,
) -> None:
    """Fields besides the file are kept in memory: at most 16 of them (each 1 KiB at
    most), so that a form of thousands is a 400, not a heap."""
    boundary = "many-fields"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{n}"\r\n\r\n{"x" * 1000}\r\n'
        for n in range(200)
    ]
    body = "".join(parts) + f"--{boundary}--\r\n"
    with job_platform.user("ivan") as client:
        answer = client.post(
            "/v1/files",
            content=body.encode(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert answer.status_code == 400, answer.text
    assert "more than 16 fields" in answer.json()["error"]["message"]


def test_a_json_body_over_the_service_s_cap_is_413(
    job_platform: JobPlatform, start_jobs: Callable[..., RunningService]
) -> None:
    """Bodies other than uploads are read whole: a replica of its own with a 2 KiB cap
    (the platform's is 8 MiB) refuses a larger one before any route has it, and still
    takes an upload larger than that."""
    with replica_of_its_own(job_platform, start_jobs, "jill", JOBS_MAX_BODY_BYTES="2048") as (
        replica
    ):
        body = {"model": "m", "prompt": "x" * 4096}
        refused = replica.post("/generate", json=body)
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["code"] == "body_too_large"
        upload = replica.post(
            "/v1/files", files={"file": ("ok.jsonl", CONTENT * 100)}, data={"purpose": "batch"}
        )
        assert upload.status_code == 200, upload.text
