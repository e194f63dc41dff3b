"""What a ModelServe's store Secret lists: the files of its model and of its adapters.

The init step (`fetch`) downloads every file of the listing into the pod's model folder:
the model where `store.target_path` puts it, each adapter of spec.adapters below
`adapters/` (`runtimes.adapter_relative`), each file against the SHA-256 the download
service recorded. An adapter comes from the platform store as a model does, and one that
is not a recorded download refuses the ModelServe as its model would (NotRecorded).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import PurePosixPath
from typing import Any

from modelserve.common.modelserve import Adapter, ModelServe
from modelserve.operator.runtimes import adapter_relative
from modelserve.operator.store import ModelFile, ModelRefused, ModelStore, safe_relative, split_uri


def adapter_files(ms: ModelServe, adapter: Adapter, files: list[ModelFile]) -> list[ModelFile]:
    """`files` of `adapter` (as the store resolved its uri) placed below its own folder: one
    file as `adapters/<name>.gguf`, a folder's files with their layout kept."""
    place = adapter_relative(ms, adapter)
    if not adapter.is_folder:
        return [dataclasses.replace(file, path=str(place)) for file in files]
    _, prefix = split_uri(adapter.uri)
    return [
        dataclasses.replace(file, path=str(place / safe_relative(file.key[len(prefix) :])))
        for file in files
    ]


def _resolved(store: ModelStore, ms: ModelServe) -> list[tuple[str, list[ModelFile]]]:
    """Each uri of `ms` (model first, then adapters) with its files where they land."""
    uri = ms.spec.model.uri or ""
    found = [(uri, store.resolve(uri))]
    for adapter in ms.spec.adapters:
        try:
            files = store.resolve(adapter.uri)
        except ModelRefused as error:
            raise ModelRefused(f"adapter {adapter.name!r}: {error}") from error
        found.append((adapter.uri, adapter_files(ms, adapter, files)))
    return found


async def store_listing(store: ModelStore, ms: ModelServe) -> str:
    """The store Secret's content for `ms` (JSON, as `fetch.parse_files` reads it): every
    file of its model and adapters, with its digest and a fresh URL. ModelRefused names
    the adapter whose object is missing or not recorded."""
    resolved = await asyncio.to_thread(_resolved, store, ms)
    uri = resolved[0][0]
    if len(resolved) == 1:
        return store.presign(uri, resolved[0][1])
    listing: list[Any] = []
    for where, files in resolved:
        listing += json.loads(store.presign(where, files))["files"]
    paths = [PurePosixPath(entry["path"]) for entry in listing]
    if len(set(paths)) != len(paths):
        # A file model named like the adapters' folder: two files would land in one place.
        raise ModelRefused(f"{uri} and spec.adapters would write the same path in the pod")
    return json.dumps({"uri": uri, "files": listing}, separators=(",", ":"))
