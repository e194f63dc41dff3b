"""Unit tests of the pure parts: names, manifests, part sizes, status figures."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from pydantic import ValidationError

from modelserve.common.objects import MAX_PARTS, MIN_PART_SIZE
from modelserve.common.store_tags import MODEL_ID_TAG, SHA256_TAG
from modelserve.common.tokens import TokenSettings
from modelserve.download.access import decision_name
from modelserve.download.gguf_metadata import quantization
from modelserve.download.records import status
from modelserve.download.settings import DownloadSettings
from modelserve.download.sources import (
    InvalidSource,
    Source,
    check_path,
    folder_digest,
    model_format,
    parse_manifest,
    printable,
    refused_model_id,
    source_model_id,
)
from modelserve.download.tables import Download, ModelRecord, State
from modelserve.download.tagging import record_objects
from modelserve.download.transfers import part_size_for


@pytest.mark.parametrize(
    "path", ["", "../x", "a/../b", "a/./b", "a//b", "/abs", "a\\b", "a\x00b", "a\x7fb", "a\tb"]
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidSource) as refused:
        check_path(path)
    assert refused.value.code == "invalid_key"


def test_safe_paths_pass() -> None:
    for path in ["model.gguf", "org/model/model-00001-of-00002.safetensors", "a..b/c", "dir/"]:
        assert check_path(path) == path


def test_a_source_is_a_key_or_a_prefix() -> None:
    single = Source("llm-models", key="org/model.Q4_1.gguf")
    assert single.uri == "s3://llm-models/org/model.Q4_1.gguf"
    assert single.relative("org/model.Q4_1.gguf") == "model.Q4_1.gguf"
    folder = Source("llm-models", prefix="org/model")
    assert folder.folder == "org/model/"
    assert folder.relative("org/model/tokenizer/vocab.json") == "tokenizer/vocab.json"
    # The same source, written two ways, is the same model.
    assert source_model_id(folder) == source_model_id(Source("llm-models", prefix="org/model/"))
    assert source_model_id(folder) != source_model_id(single)
    for bad in ({"key": "a", "prefix": "b"}, {}, {"key": "dir/"}):
        with pytest.raises(InvalidSource):
            Source("llm-models", **bad)


def test_manifest() -> None:
    digest = "ab" * 32
    manifest = parse_manifest(
        json.dumps(
            {
                "name": "Tiny",
                "format": "safetensors",
                "files": [{"path": "model.safetensors", "size": 10, "sha256": digest.upper()}],
            }
        ).encode()
    )
    assert manifest.name == "Tiny"
    assert manifest.sha256 == {"model.safetensors": digest}
    assert manifest.sizes == {"model.safetensors": 10}
    for broken in [b"{", b"[]", b'{"files": [{"path": "../x"}]}', b'{"files": [{"sha256": "1"}]}']:
        with pytest.raises(InvalidSource) as refused:
            parse_manifest(broken)
        assert refused.value.code == "invalid_manifest"


def test_part_sizes_keep_under_s3_limits() -> None:
    assert part_size_for(100, 16 << 20) == 16 << 20
    huge = 1 << 40  # 1 TiB needs parts of over 100 MiB
    size = part_size_for(huge, 16 << 20)
    assert -(-huge // size) <= MAX_PARTS
    assert size % MIN_PART_SIZE == 0
    assert part_size_for(10, 1) == MIN_PART_SIZE


def test_folder_digest_is_that_of_a_sha256sum_listing() -> None:
    files = {"b.json": "1" * 64, "a.safetensors": "2" * 64}
    listing = f"{'2' * 64}  a.safetensors\n{'1' * 64}  b.json\n"
    assert folder_digest(files) == hashlib.sha256(listing.encode()).hexdigest()


def test_formats_and_quantizations() -> None:
    assert model_format(["config.json", "model.safetensors"]) == "safetensors"
    assert model_format(["m.Q4_K_M.gguf", "manifest.json"]) == "gguf"
    assert model_format(["pytorch_model.bin"]) == "pytorch"
    assert quantization(3) == "Q4_1"
    assert quantization(1) == "F16"
    assert quantization(None) is None
    assert quantization(9999) == "file_type 9999"


def test_status_figures() -> None:
    now = dt.datetime.now(dt.UTC)
    job = Download(
        model_id="m",
        source_bucket="llm-models",
        source_prefix="m/",
        state=State.TRANSFERRING,
        bytes_done=25,
        bytes_total=100,
        rate=5.0,
        requested_by="alice",
        created_at=now,
    )
    figures = status(job)
    assert figures.progress == 0.25
    assert figures.eta_seconds == 15.0
    assert figures.source == "s3://llm-models/m/"
    assert figures.error is None
    failed = status(
        job.model_copy(update={"state": State.FAILED, "error_code": "x", "error": "why"})
    )
    assert failed.eta_seconds is None
    assert failed.rate_bytes_per_second is None
    assert failed.error is not None and failed.error.message == "why"


def test_a_refused_request_is_recorded_under_the_id_its_source_would_have() -> None:
    for prefix in ("org/model", "org/model/"):
        source = Source("llm-models", prefix=prefix)
        assert refused_model_id(None, "llm-models", None, prefix) == source_model_id(source)
    key = Source("llm-models", key="org/model.gguf")
    assert refused_model_id(None, "llm-models", "org/model.gguf", None) == source_model_id(key)
    assert refused_model_id("mine", "llm-models", "../x", None) == "mine"
    assert refused_model_id("../bad", "b", "k", None) != "../bad"


def test_the_service_needs_an_upstream_bucket() -> None:
    with pytest.raises(ValidationError, match="at least one upstream bucket"):
        DownloadSettings(upstream_buckets=" , ", tokens=TokenSettings(development=True))
    dev = TokenSettings(development=True)
    assert DownloadSettings(upstream_buckets="a, b", tokens=dev).allowed_buckets() == ["a", "b"]


def test_text_that_is_not_unicode_is_refused_and_recorded_escaped() -> None:
    with pytest.raises(InvalidSource, match="not valid Unicode") as refused:
        check_path("org/\ud800.gguf")
    assert refused.value.code == "invalid_key"
    assert printable("a\ud800\x00b") == "a\\ud800\\x00b"
    assert refused_model_id(None, "llm-models", "a\ud800", None) == refused_model_id(
        None, "llm-models", "a\\ud800", None
    )


@pytest.mark.parametrize(
    ("key", "prefix", "judged"),
    [
        ("org/evil-model.gguf", None, "evil-model.gguf"),
        (None, "org/llama-3-8b/", "llama-3-8b"),
        (None, "0b1c-uuid", "0b1c-uuid"),
        ("smol\x00.gguf", None, "smol\\x00.gguf"),
    ],
)
def test_a_download_decision_judges_the_name_of_the_source(
    key: str | None, prefix: str | None, judged: str
) -> None:
    assert decision_name("llm-models", key, prefix) == judged


def test_every_stored_file_of_a_record_has_its_tags() -> None:
    record = ModelRecord(
        id="m",
        name="m",
        format="safetensors",
        size=3,
        sha256="f" * 64,
        verified=False,
        source="s3://llm-models/m/",
        bucket="inference-models",
        storage_key="models/m/",
        uri="s3://inference-models/models/m/",
        files=[
            {"path": "a.safetensors", "size": 2, "sha256": "A" * 64},
            {"path": "manifest.json", "size": 1, "sha256": "b" * 64},
            {"path": "from-a-bug.bin", "size": 1},
        ],
        requested_by="alice",
    )
    assert record_objects(record) == [
        ("models/m/a.safetensors", {SHA256_TAG: "a" * 64, MODEL_ID_TAG: "m"}),
        ("models/m/manifest.json", {SHA256_TAG: "b" * 64, MODEL_ID_TAG: "m"}),
    ]
