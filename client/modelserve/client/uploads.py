"""Uploading a checkpoint by the presigned URLs of POST /models/uploads: which bytes of
the file go to which URL, read from disk a chunk at a time (never the whole file in
memory), and the ETag each part's PUT answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from modelserve.client.answers import Upload
from modelserve.client.errors import ModelServeError

CHUNK = 1 << 20
# (bytes sent so far, bytes in all)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Piece:
    """`length` bytes of the file from `offset`, PUT to `url`; `part_number` None for
    the upload's single PUT."""

    part_number: int | None
    url: str
    offset: int
    length: int


def pieces(upload: Upload) -> list[Piece]:
    if upload.url:
        return [Piece(None, upload.url, 0, upload.size)]
    if not upload.parts or not upload.part_size:
        raise ModelServeError(
            "upload_not_open", f"upload {upload.upload_id} is {upload.state}: no URL to PUT to"
        )
    size, found = upload.part_size, []
    for part in sorted(upload.parts, key=lambda p: p.part_number):
        offset = (part.part_number - 1) * size
        found.append(Piece(part.part_number, part.url, offset, min(size, upload.size - offset)))
    return found


def etag_of(headers: Mapping[str, str], piece: Piece) -> str:
    etag = headers.get("etag")
    if not etag:
        raise ModelServeError("upload_failed", f"part {piece.part_number} was stored without ETag")
    return etag.strip('"')


class Counter:
    """Bytes sent, told to `progress` as each chunk goes."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress

    def add(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)


def read_piece(path: Path, piece: Piece, counter: Counter) -> Iterator[bytes]:
    with path.open("rb") as file:
        file.seek(piece.offset)
        left = piece.length
        while left > 0:
            chunk = file.read(min(CHUNK, left))
            if not chunk:
                raise ModelServeError("upload_failed", f"{path} is shorter than announced")
            left -= len(chunk)
            counter.add(len(chunk))
            yield chunk


async def aread_piece(path: Path, piece: Piece, counter: Counter) -> AsyncIterator[bytes]:
    """As read_piece, each read in a thread so that the event loop never waits on disk."""
    chunks = read_piece(path, piece, counter)
    while True:
        chunk = await asyncio.to_thread(next, chunks, None)
        if chunk is None:
            return
        yield chunk
