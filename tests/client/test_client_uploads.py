"""Uploads through the sync and async clients, against a stand-in gateway and store
(httpx.MockTransport): which bytes go where, streamed; no token to the store; the ETags
in the completion; a failed upload given up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.client import AsyncClient, Client, ModelServeError
from modelserve.client.answers import Upload
from modelserve.client.uploads import Counter, Piece, pieces, read_piece

GATEWAY = "http://gateway.test"
STORE = "http://store.test"


def _upload(size: int, part_size: int | None) -> dict[str, Any]:
    multipart = part_size is not None and size > part_size
    count = -(-size // part_size) if multipart and part_size else 0
    return {
        "upload_id": "u1",
        "filename": "m.gguf",
        "size": size,
        "uri": "s3://b/uploads/u1/m.gguf",
        "state": "open",
        "url": None if multipart else f"{STORE}/single",
        "part_size": part_size if multipart else None,
        "parts": [{"part_number": n, "url": f"{STORE}/part{n}"} for n in range(1, count + 1)],
    }


def test_pieces_cover_the_file_once() -> None:
    single = Upload.model_validate(_upload(10, None))
    assert pieces(single) == [Piece(None, f"{STORE}/single", 0, 10)]
    parts = Upload.model_validate(_upload(10, 4))
    assert [(p.part_number, p.offset, p.length) for p in pieces(parts)] == [
        (1, 0, 4), (2, 4, 4), (3, 8, 2),
    ]  # fmt: skip
    done = Upload.model_validate({**_upload(10, None), "state": "complete", "url": None})
    with pytest.raises(ModelServeError, match="upload_not_open"):
        pieces(done)


def test_a_piece_is_read_a_chunk_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelserve.client.uploads.CHUNK", 3)
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    seen: list[tuple[int, int]] = []
    counter = Counter(10, lambda done, total: seen.append((done, total)))
    chunks = list(read_piece(path, Piece(2, "u", 2, 7), counter))
    assert chunks == [b"234", b"567", b"8"]
    assert seen == [(3, 10), (6, 10), (7, 10)]


class Stand:
    """The gateway's upload routes and a store that keeps what is PUT to it."""

    def __init__(self, part_size: int | None, fail_part: int | None = None) -> None:
        self.part_size, self.fail_part = part_size, fail_part
        self.stored: dict[str, bytes] = {}
        self.completed: Any = None
        self.deleted = False
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        if url.startswith(STORE):
            assert "authorization" not in request.headers
            name = request.url.path.strip("/")
            if self.fail_part is not None and name == f"part{self.fail_part}":
                return httpx.Response(403, text="<Error>SignatureDoesNotMatch</Error>")
            self.stored[name] = request.read()
            assert int(request.headers["content-length"]) == len(self.stored[name])
            return httpx.Response(200, headers={"ETag": f'"etag-{name}"'})
        assert request.headers["authorization"] == "Bearer tok"
        if request.url.path == "/models/uploads":
            size = json.loads(request.content)["size"]
            return httpx.Response(201, json=_upload(size, self.part_size))
        if request.url.path.endswith("/complete"):
            self.completed = json.loads(request.content)
            return httpx.Response(200, json={**_upload(1, None), "state": "complete"})
        if request.method == "DELETE":
            self.deleted = True
            return httpx.Response(204)
        body = json.loads(request.content)
        job = {"model_id": body["id"], "kind": "register", "state": "queued"}
        return httpx.Response(202, json={**job, "upload_id": body["upload_id"]})


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "step.gguf"
    path.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes
    return path


def test_a_single_put_then_register(checkpoint: Path) -> None:
    stand = Stand(part_size=None)
    seen: list[int] = []
    with Client(GATEWAY, "tok", transport=httpx.MockTransport(stand)) as client:
        job = client.register_model(
            "v1", upload=checkpoint, on_progress=lambda d, t: seen.append(d)
        )
    assert (job.model_id, job.state, job.model_dump()["upload_id"]) == ("v1", "queued", "u1")
    assert stand.stored == {"single": checkpoint.read_bytes()}
    assert stand.completed == {"parts": []} and seen[-1] == 10_240


def test_multipart_through_the_async_client(checkpoint: Path) -> None:
    stand = Stand(part_size=4096)

    async def upload() -> Upload:
        async with AsyncClient(GATEWAY, "tok", transport=httpx.MockTransport(stand)) as client:
            return await client.upload(checkpoint)

    assert asyncio.run(upload()).state == "complete"
    data = checkpoint.read_bytes()
    assert stand.stored == {"part1": data[:4096], "part2": data[4096:8192], "part3": data[8192:]}
    assert stand.completed == {
        "parts": [{"part_number": n, "etag": f"etag-part{n}"} for n in (1, 2, 3)]
    }


def test_a_refused_part_gives_the_upload_up(checkpoint: Path) -> None:
    stand = Stand(part_size=4096, fail_part=2)
    with (
        Client(GATEWAY, "tok", transport=httpx.MockTransport(stand)) as client,
        pytest.raises(ModelServeError) as raised,
    ):
        client.upload(checkpoint)
    assert (raised.value.code, raised.value.status) == ("upload_failed", 403)
    assert stand.deleted and stand.completed is None
