"""The OpenAI Batch API through the real gateway and jobs service on SmolLM2
(`job_platform`), driven by the official `openai` client exactly as OpenAI documents the
flow: files.create, batches.create, batches.retrieve until it ends, files.content of the
output and error files. Every request runs as the batch's owner: counted for them in the
contract service, refused with their own contract's answers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai.types import Batch

from modelserve.testbed.job_platform import JobPlatform
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.minio, pytest.mark.llm]

ENDED = ("completed", "failed", "expired", "cancelled")


def openai_client(platform: JobPlatform, name: str) -> openai.OpenAI:
    platform.user(name).close()
    return openai.OpenAI(
        base_url=platform.gateway.url + "/v1", api_key=platform.token(name), max_retries=0
    )


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


def chat_line(platform: JobPlatform, custom_id: str, text: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": platform.model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 2,
            "temperature": 0,
        },
    }


def run_batch(client: openai.OpenAI, content: bytes, endpoint: str, timeout: float = 240) -> Batch:
    """OpenAI's documented flow: upload, create, poll until the batch has ended."""
    uploaded = client.files.create(file=("input.jsonl", content), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        metadata={"purpose": "tests"},
    )
    # An unusable file fails at once; a batch is queued (validating) otherwise.
    assert batch.status in ("validating", "failed") and batch.input_file_id == uploaded.id

    def ended() -> Batch | None:
        current = client.batches.retrieve(batch.id)
        return current if current.status in ENDED else None

    return wait_for(ended, timeout=timeout, what=f"batch {batch.id} to end", interval=0.5)


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_200_request_chat_batch_through_the_openai_client(job_platform: JobPlatform) -> None:
    client = openai_client(job_platform, "dave")
    ids = [f"req-{i:03d}" for i in range(200)]
    content = jsonl([chat_line(job_platform, cid, f"Say {i}.") for i, cid in enumerate(ids)])

    batch = run_batch(client, content, "/v1/chat/completions")

    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 200, "completed": 200, "failed": 0}
    assert batch.error_file_id is None and batch.metadata == {"purpose": "tests"}
    assert batch.model == job_platform.model
    assert batch.in_progress_at and batch.completed_at and batch.finalizing_at
    assert batch.expires_at == batch.created_at + 24 * 3600
    output = read_lines(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in output) == ids  # each exactly once
    for line in output:
        assert line["error"] is None and line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] <= 2
    assert batch.usage is not None and batch.usage.output_tokens == sum(
        line["response"]["body"]["usage"]["completion_tokens"] for line in output
    )
    output_file = client.files.retrieve(batch.output_file_id or "")
    assert output_file.purpose == "batch_output" and output_file.bytes > 0
    assert batch.id in {b.id for b in client.batches.list().data}

    # Every request was counted for dave like his own online request.
    admin_token = job_platform.signer.sign("root", roles=["admin"])

    def usage() -> dict[str, Any] | None:
        answer = httpx.get(
            f"{job_platform.contract.url}/usage",
            params={"user": "dave", "period": "day"},
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        counted: dict[str, Any] = answer.json()
        return counted if counted["requests"] >= 200 else None

    counted = wait_for(usage, timeout=30, what="dave's 200 requests to be counted for him")
    assert counted["requests"] == 200
    assert counted["completion_tokens"] == batch.usage.output_tokens


def test_bad_lines_are_reported_one_by_one_and_the_rest_completes(
    job_platform: JobPlatform,
) -> None:
    client = openai_client(job_platform, "erin")
    model = job_platform.model

    def completion(custom_id: str, **changes: Any) -> dict[str, Any]:
        line = {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": model, "prompt": "1 + 1 =", "max_tokens": 2, "temperature": 0},
        }
        return {**line, **changes}

    content = jsonl(
        [
            completion("good-1"),
            b"this is not JSON",
            {"method": "POST", "url": "/v1/completions", "body": {"model": model}},
            completion("good-1"),  # a custom_id seen before
            completion("wrong-url", url="/v1/chat/completions"),
            completion("no-model", body={"prompt": "hi", "max_tokens": 2}),
            completion("other-model", body={"model": "no-such-model", "prompt": "hi"}),
            # JSON that PostgreSQL's jsonb refuses: NaN, \u0000, and nesting Python's
            # json cannot even parse (RecursionError).
            json.dumps(
                completion("nan", body={"model": model, "temperature": float("nan")})
            ).encode(),
            completion("nul", body={"model": model, "prompt": "a\x00b"}),
            b"[" * 200_000,
            completion("good-2"),
        ]
    )
    batch = run_batch(client, content, "/v1/completions")

    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 11, "completed": 2, "failed": 9}
    output = read_lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == ["good-1", "good-2"]
    assert {line["response"]["body"]["object"] for line in output} == {"text_completion"}
    errors = read_lines(client, batch.error_file_id)
    reported = [(e["custom_id"], e["error"]["code"]) for e in errors]
    assert reported == [
        (None, "invalid_json"),
        (None, "missing_custom_id"),
        ("good-1", "duplicate_custom_id"),
        ("wrong-url", "invalid_url"),
        ("no-model", "missing_model"),
        ("other-model", "model_mismatch"),
        (None, "invalid_json"),
        (None, "invalid_json"),
        (None, "invalid_json"),
    ]
    assert [e["error"]["message"].split(":")[0] for e in errors] == [
        f"line {n}" for n in range(2, 11)
    ]
    assert all(e["response"] is None for e in errors)

    # A request the gateway refused keeps its answer, status code and all.
    lost = completion("no-such-model", body={"model": "no-such-model", "prompt": "hi"})
    batch = run_batch(client, jsonl([lost]), "/v1/completions")
    [error] = read_lines(client, batch.error_file_id)
    assert error["error"]["code"] == "model_not_found"
    assert error["response"]["status_code"] == 404
    assert error["response"]["body"]["error"]["code"] == "model_not_found"


def test_embeddings_requests_reach_the_model_server(job_platform: JobPlatform) -> None:
    """The external SmolLM2 here is llama-cpp-python's server started without
    `--embedding`: it answers /v1/embeddings with a 500, which the gateway passes on. The
    batch sends each request (retried as a server error is), then reports it failed in
    the error file; it never hangs nor fails as a whole."""
    client = openai_client(job_platform, "erin")
    line = {
        "custom_id": "embed-1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": job_platform.model, "input": "hello"},
    }
    batch = run_batch(client, jsonl([line]), "/v1/embeddings", timeout=120)
    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 1, "completed": 0, "failed": 1}
    [error] = read_lines(client, batch.error_file_id)
    assert error["custom_id"] == "embed-1" and error["error"]["code"] == "gateway_error"
    assert "500" in error["error"]["message"]
    assert batch.output_file_id is None


def test_a_batch_is_cancelled_and_keeps_what_was_done(job_platform: JobPlatform) -> None:
    client = openai_client(job_platform, "frank")
    ids = [f"c{i}" for i in range(60)]
    content = jsonl([chat_line(job_platform, cid, f"Count to {i}.") for i, cid in enumerate(ids)])
    uploaded = client.files.create(file=("input.jsonl", content), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    def first_done() -> int | None:
        counts = client.batches.retrieve(batch.id).request_counts
        return counts.completed if counts else None

    wait_for(first_done, timeout=60, what="a first request done")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    assert cancelling.cancelling_at is not None

    def cancelled() -> Batch | None:
        current = client.batches.retrieve(batch.id)
        return current if current.status == "cancelled" else None

    ended = wait_for(cancelled, timeout=60, what="the batch to be cancelled")
    counts = ended.request_counts
    assert counts is not None and 0 < counts.completed < 60
    assert ended.cancelled_at is not None and ended.completed_at is None
    done = read_lines(client, ended.output_file_id)
    assert len(done) == counts.completed
    assert len({line["custom_id"] for line in done}) == counts.completed
    # Cancelling it again answers it as it is.
    assert client.batches.cancel(batch.id).status == "cancelled"


def test_another_user_sees_nothing_of_a_batch(job_platform: JobPlatform) -> None:
    owner = openai_client(job_platform, "gina")
    batch = run_batch(owner, jsonl([chat_line(job_platform, "one", "Hi.")]), "/v1/chat/completions")
    assert batch.status == "completed"
    other = openai_client(job_platform, "harry")
    for call in (other.batches.retrieve, other.batches.cancel):
        with pytest.raises(openai.NotFoundError):
            call(batch.id)
    assert batch.id not in {b.id for b in other.batches.list().data}
    for file_id in (batch.input_file_id, batch.output_file_id or ""):
        with pytest.raises(openai.NotFoundError):
            other.files.content(file_id)
    with pytest.raises(openai.NotFoundError):
        other.batches.create(
            input_file_id=batch.input_file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
    with job_platform.admin() as admin:
        assert admin.get(f"/v1/batches/{batch.id}").json()["id"] == batch.id
    with pytest.raises(openai.ConflictError) as finished:
        owner.batches.cancel(batch.id)
    assert finished.value.code == "batch_not_cancellable"


def test_a_batch_of_an_unusable_file_fails_with_its_errors(job_platform: JobPlatform) -> None:
    client = openai_client(job_platform, "gina")
    batch = run_batch(client, b"\n\n", "/v1/chat/completions", timeout=30)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    assert [e.code for e in batch.errors.data] == ["empty_file"]
    assert batch.failed_at is not None and batch.output_file_id is None
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(
            input_file_id=batch.input_file_id,
            endpoint="/v1/responses",
            completion_window="24h",
        )
    assert refused.value.body and "endpoint" in str(refused.value.body)


def test_nul_characters_in_ids_cursors_and_names_are_refused_never_a_500(
    job_platform: JobPlatform,
) -> None:
    """PostgreSQL keeps no NUL character: an id or cursor holding one names nothing
    (404, or 400 for a cursor), in OpenAI's shape, and an upload's name loses it."""
    with job_platform.user("erin") as erin:
        for method, path, status, code in [
            ("GET", "/v1/batches?after=%00", 400, "invalid_request"),
            ("GET", "/v1/batches/%00", 404, "batch_not_found"),
            ("POST", "/v1/batches/batch_%00/cancel", 404, "batch_not_found"),
            ("GET", "/v1/files?after=file-%00", 400, "invalid_request"),
            ("GET", "/v1/files/%00", 404, "file_not_found"),
            ("GET", "/v1/files/file-%00/content", 404, "file_not_found"),
            ("DELETE", "/v1/files/%00", 404, "file_not_found"),
        ]:
            answer = erin.request(method, path)
            assert answer.status_code == status, (path, answer.text)
            assert answer.json()["error"]["code"] == code, (path, answer.text)
        create = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}
        unknown = erin.post("/v1/batches", json={**create, "input_file_id": "file-\x00"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "file_not_found"

        boundary = "nul-name-boundary"
        form = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="in\x00put\x1b.jsonl"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
            f"{json.dumps(chat_line(job_platform, 'one', 'Hi.'))}\n\r\n"
            f"--{boundary}--\r\n"
        ).encode()
        made = erin.post(
            "/v1/files",
            content=form,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert made.status_code == 200, made.text
        assert made.json()["filename"] == "in_put_.jsonl"
        odd = {**create, "input_file_id": made.json()["id"], "metadata": {"a": "\x00"}}
        refused = erin.post("/v1/batches", json=odd)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "metadata"
        long_key = {**odd, "metadata": {"k" * 65: "v"}}
        refused = erin.post("/v1/batches", json=long_key)
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, "metadata")
        # A null `metadata`, as the openai client sends `metadata=None`: none.
        made_none = erin.post("/v1/batches", json={**odd, "metadata": None})
        assert made_none.status_code == 200, made_none.text
        assert made_none.json()["metadata"] is None
        assert erin.post(f"/v1/batches/{made_none.json()['id']}/cancel").status_code == 200
