"""What a GGUF file says of itself, read from its header with the `gguf` package.

The transfer keeps only the first bytes of the file, in a sparse file of the full size:
`GGUFReader` maps the whole file but reads the tensor data only when asked for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GgufMetadata:
    architecture: str | None
    name: str | None
    parameters: int | None
    quantization: str | None
    context_length: int | None


def _value(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def quantization(file_type: Any) -> str | None:
    """`general.file_type` (a llama_ftype number) as its usual name: Q4_1, F16, ..."""
    if file_type is None:
        return None
    try:
        return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"file_type {file_type}"


class _HeaderReader(gguf.GGUFReader):
    """A reader that keeps the key-value fields of a file whose tensor data is cut short
    (a corrupt checkpoint is still registered, with what its header says); its tensors
    are then left out."""

    def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
        try:
            super()._build_tensors(start_offs, fields)
        except (ValueError, IndexError) as error:
            logger.warning("GGUF tensor data unreadable (%s): header fields only", error)
            self.tensors = []


def read_metadata(path: Path) -> GgufMetadata:
    """The header's facts; raises ValueError when it is not a GGUF header (or is longer
    than the bytes kept)."""
    try:
        reader = _HeaderReader(path)
    except (ValueError, IndexError, KeyError, OSError) as error:
        raise ValueError(f"not a readable GGUF header: {error}") from error
    architecture = _value(reader, "general.architecture")
    parameters = _value(reader, "general.parameter_count")
    if parameters is None and reader.tensors:
        parameters = sum(int(tensor.n_elements) for tensor in reader.tensors)
    context = _value(reader, f"{architecture}.context_length") if architecture else None
    return GgufMetadata(
        architecture=str(architecture) if architecture is not None else None,
        name=_value(reader, "general.name"),
        parameters=int(parameters) if parameters is not None else None,
        quantization=quantization(_value(reader, "general.file_type")),
        context_length=int(context) if context is not None else None,
    )
