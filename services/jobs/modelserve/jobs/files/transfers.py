"""Files in and out of the platform store without holding one whole in memory: an
upload's multipart/form-data body is parsed as it arrives (python-multipart's streaming
parser) and its `file` part written to the store in parts of PART_SIZE; a download reads
the object back in ranges of READ_SIZE."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from modelserve.common.objects import ObjectStore
from modelserve.jobs.openai_errors import OpenAIError

PART_SIZE = 8 << 20
READ_SIZE = 1 << 20
# A form field other than the file (`purpose`) is short, and so is a part's header.
FIELD_MAX = 1024
# Fields of a form besides its file (the Files API names two: `purpose` and `file`).
FIELDS_MAX = 16
HEADER_MAX = 8 * 1024


class StoreWriter:
    """One object written as a multipart upload, part by part as its bytes come; nothing
    is visible under `key` until `finish`, and `abort` leaves nothing."""

    def __init__(self, objects: ObjectStore, bucket: str, key: str) -> None:
        self._objects = objects
        self._bucket = bucket
        self.key = key
        self._upload: str | None = None
        self._etags: list[str] = []
        self._buffer = bytearray()

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= PART_SIZE:
            await self._flush()

    async def _flush(self) -> None:
        objects, bucket, key = self._objects, self._bucket, self.key
        if self._upload is None:
            self._upload = await asyncio.to_thread(objects.create_upload, bucket, key)
        data = bytes(self._buffer)
        self._buffer.clear()
        number = len(self._etags) + 1
        self._etags.append(
            await asyncio.to_thread(objects.upload_part, bucket, key, self._upload, number, data)
        )

    async def finish(self) -> None:
        if self._buffer or not self._etags:
            await self._flush()
        assert self._upload is not None
        await asyncio.to_thread(
            self._objects.complete_upload, self._bucket, self.key, self._upload, self._etags
        )

    async def abort(self) -> None:
        if self._upload is not None:
            await asyncio.to_thread(
                self._objects.abort_upload, self._bucket, self.key, self._upload
            )


@dataclass
class Upload:
    """What an upload's form held: its fields, the file's name, size and lines."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0
    lines: int = 0
    last_byte: bytes = b""


@dataclass
class _Part:
    name: str
    filename: str | None


class _FormEvents:
    """python-multipart's callbacks (called synchronously inside `write`) turned into a
    list of events that the upload's coroutine then handles."""

    def __init__(self) -> None:
        self.events: list[tuple[str, _Part | bytes | None]] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": lambda data, start, end: self._extend(self._field, data[start:end]),
            "on_header_value": lambda data, start, end: self._extend(self._value, data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self.events.append(
                ("data", bytes(data[start:end]))
            ),
            "on_part_end": lambda: self.events.append(("end", None)),
        }

    @staticmethod
    def _extend(held: bytearray, data: bytes) -> None:
        held.extend(data)
        if len(held) > HEADER_MAX:
            raise OpenAIError(400, f"a part's header is longer than {HEADER_MAX} bytes")

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        part = _Part(name, None if filename is None else clean_filename(filename))
        self.events.append(("part", part))


def clean_filename(raw: bytes) -> str:
    """An upload's file name as it is kept: UTF-8 (what is not, replaced), its control
    characters (NUL, newlines, …: PostgreSQL keeps no NUL, and a name is shown in headers
    and listings) replaced by `_`."""
    name = raw.decode("utf-8", "replace")
    return "".join("_" if unicodedata.category(c) == "Cc" else c for c in name)


def form_boundary(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data body, or a 400."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise OpenAIError(
            400,
            "an upload is multipart/form-data with a `file` and a `purpose`",
            code="invalid_request",
        )
    return boundary


async def receive_file(
    chunks: AsyncIterable[bytes], boundary: bytes, sink: StoreWriter, max_bytes: int
) -> Upload:
    """Parse a form as it arrives: its one `file` part goes to `sink` (at most `max_bytes`:
    413 beyond), other fields are kept (short ones only)."""
    events = _FormEvents()
    parser = MultipartParser(boundary, events.callbacks())  # type: ignore[arg-type]
    upload = Upload()
    current: _Part | None = None
    value = bytearray()
    fields = 0
    try:
        async for chunk in chunks:
            parser.write(chunk)
            for kind, payload in events.events:
                if isinstance(payload, _Part):
                    current, value = payload, bytearray()
                    if current.name != "file":
                        fields += 1
                        if fields > FIELDS_MAX:
                            raise OpenAIError(
                                400, f"the form has more than {FIELDS_MAX} fields besides `file`"
                            )
                    if current.name == "file":
                        if upload.filename is not None:
                            raise OpenAIError(400, "one `file` per upload", param="file")
                        upload.filename = current.filename or "file"
                elif kind == "data" and isinstance(payload, bytes) and current is not None:
                    if current.name == "file":
                        upload.size += len(payload)
                        if upload.size > max_bytes:
                            raise OpenAIError(
                                413,
                                f"the file is larger than this platform's limit of "
                                f"{max_bytes} bytes",
                                code="file_too_large",
                                param="file",
                            )
                        upload.lines += payload.count(b"\n")
                        if payload:
                            upload.last_byte = payload[-1:]
                        await sink.write(payload)
                    else:
                        value += payload
                        if len(value) > FIELD_MAX:
                            raise OpenAIError(
                                400, f"the field `{current.name}` is too long", param=current.name
                            )
                elif kind == "end" and current is not None:
                    if current.name != "file":
                        upload.fields[current.name] = value.decode("utf-8", "replace")
                    current = None
            events.events.clear()
        parser.finalize()
    except MultipartParseError as error:
        raise OpenAIError(
            400, f"the upload is not a readable multipart/form-data body: {error}"
        ) from error
    if upload.size and upload.last_byte != b"\n":
        upload.lines += 1  # a last line without its newline
    return upload


async def read_object(
    objects: ObjectStore, bucket: str, key: str, size: int
) -> AsyncIterator[bytes]:
    """An object's `size` bytes, in ranges of READ_SIZE."""
    offset = 0
    while offset < size:
        length = min(READ_SIZE, size - offset)
        yield await asyncio.to_thread(objects.read, bucket, key, offset, length)
        offset += length


async def prefixed(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`first` (already read from `rest`), then the rest of `rest`."""
    if first:
        yield first
    async for chunk in rest:
        yield chunk


@dataclass(frozen=True)
class LineTooLong:
    """A line longer than `limit` bytes, in place of its bytes (which are not kept)."""

    size: int
    limit: int


async def split_lines(
    chunks: AsyncIterable[bytes], max_line: int
) -> AsyncIterator[bytes | LineTooLong]:
    """The lines of `chunks` (without their newline), each as soon as its newline comes;
    a line of more than `max_line` bytes is a LineTooLong (its bytes dropped as they
    come, so one line never holds more than `max_line` in memory). Linear in the bytes
    read, however long a line is."""
    pieces: list[bytes] = []
    length = 0
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            length += end - start
            if length <= max_line:
                pieces.append(chunk[start:end])
                yield b"".join(pieces)
            else:
                yield LineTooLong(length, max_line)
            pieces, length = [], 0
            start = end + 1
        length += len(chunk) - start
        if length <= max_line:
            pieces.append(chunk[start:])
        else:
            pieces.clear()
    if length > max_line:
        yield LineTooLong(length, max_line)
    elif length:
        yield b"".join(pieces)


async def read_lines(
    objects: ObjectStore, bucket: str, key: str, size: int, max_line: int
) -> AsyncIterator[bytes | LineTooLong]:
    """An object's lines (without their newline), as they are read (see split_lines)."""
    async for line in split_lines(read_object(objects, bucket, key, size), max_line):
        yield line
