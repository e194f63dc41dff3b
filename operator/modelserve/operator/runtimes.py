"""What each runtime's server container runs: image, port, command-line flags and the
environment the operator sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from modelserve.common.modelserve import Adapter, ModelServe, Runtime
from modelserve.operator.settings import OperatorSettings

MODEL_DIR = PurePosixPath("/models")
# Hugging Face's switches that keep a vLLM server off the hub (huggingface_hub's and
# transformers' documented environment variables).
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# Where the init step leaves spec.adapters, beside the model (see `adapter_path`).
ADAPTER_DIR = "adapters"


@dataclass(frozen=True)
class ServerContainer:
    image: str
    port: int
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


def model_path(ms: ModelServe) -> str:
    """Where the init step leaves the model in the pod: a folder, or the file itself."""
    _, key = ms.spec.model.bucket_and_key()
    if ms.spec.model.is_folder:
        return str(MODEL_DIR / "model")
    return str(MODEL_DIR / PurePosixPath(key).name)


def adapter_relative(ms: ModelServe, adapter: Adapter) -> PurePosixPath:
    """Where `adapter` lands relative to the model folder: llama.cpp's one GGUF file as
    `adapters/<name>.gguf`, vLLM's folder as `adapters/<name>/` (its layout kept). The
    name, not the object's key, names it: a key may hold the ',' and ':' that
    llama-server's --lora-scaled splits on."""
    if ms.spec.runtime is Runtime.LLAMACPP:
        return PurePosixPath(ADAPTER_DIR) / f"{adapter.name}.gguf"
    return PurePosixPath(ADAPTER_DIR) / adapter.name


def adapter_path(ms: ModelServe, adapter: Adapter) -> str:
    return str(MODEL_DIR / adapter_relative(ms, adapter))


Flag = tuple[str, str | Sequence[str] | None]


def merge_flags(defaults: Sequence[Flag], user: Sequence[str]) -> tuple[str, ...]:
    """Our flags, minus any the user sets in `args` themselves, then the user's.

    A default is `(flag, value)`, `(flag, [values…])` for a flag of several values, or
    `(flag, None)` for a switch. The user's args win over ours because they are the way
    to say "not this default".
    """
    given = {arg.split("=", 1)[0] for arg in user if arg.startswith("-")}
    merged: list[str] = []
    for flag, value in defaults:
        if flag in given:
            continue
        if value is None:
            merged.append(flag)
        elif isinstance(value, str):
            merged.extend([flag, value])
        else:
            merged.extend([flag, *value])
    return (*merged, *user)


def vllm_container(ms: ModelServe, settings: OperatorSettings) -> ServerContainer:
    options = ms.spec.vllm
    defaults: list[Flag] = [
        ("--served-model-name", ms.served_name),
        ("--host", "0.0.0.0"),
        ("--port", str(settings.vllm_port)),
        ("--tensor-parallel-size", str(ms.spec.resources.gpus)),
        ("--gpu-memory-utilization", str(options.gpu_memory_utilization)),
        (
            "--enable-prefix-caching" if options.prefix_caching else "--no-enable-prefix-caching",
            None,
        ),
    ]
    if options.max_model_len:
        defaults.append(("--max-model-len", str(options.max_model_len)))
    if ms.spec.adapters:
        # Each adapter is a model of the server's own, by its name (vLLM's /v1/models
        # lists it with the served model as its parent).
        modules = [f"{a.name}={adapter_path(ms, a)}" for a in ms.spec.adapters]
        defaults += [("--enable-lora", None), ("--lora-modules", modules)]
    domains = settings.vllm_allowed_media_domains.split()
    if domains:
        defaults.append(("--allowed-media-domains", domains))
    # The image's entrypoint is `vllm serve`; the model path comes first.
    args = (model_path(ms), *merge_flags(defaults, ms.spec.args))
    # A media URL the gateway let through (a public one) may not redirect vLLM elsewhere:
    # vLLM's own switch ("Multimodal Inputs", docs.vllm.ai). And the server runs the model
    # the operator fetched, offline: nothing from the Hugging Face hub (a tokenizer, a
    # config, code), unless an admin's spec.env says otherwise.
    given = {env.name for env in ms.spec.env}
    offline = [(name, "1") for name in OFFLINE_ENV if name not in given]
    env = (("VLLM_MEDIA_URL_ALLOW_REDIRECTS", "0"), *offline)
    return ServerContainer(settings.vllm_image, settings.vllm_port, args, env)


def llamacpp_container(ms: ModelServe, settings: OperatorSettings) -> ServerContainer:
    gpus = ms.spec.resources.gpus
    defaults: list[Flag] = [
        ("--model", model_path(ms)),
        ("--alias", ms.served_name),
        ("--host", "0.0.0.0"),
        ("--port", str(settings.llamacpp_port)),
        ("--ctx-size", str(ms.spec.llamacpp.context_size)),
        # Prometheus /metrics on the server's port (llamacpp:*), which llama-server serves
        # only when asked; vLLM serves its own (vllm:*) always.
        ("--metrics", None),
    ]
    if gpus:
        defaults.append(("--n-gpu-layers", "999"))  # every layer on the GPUs
    if ms.spec.adapters:
        # Loaded at scale 0: a request without `lora` gets the model unchanged, and the
        # gateway gives each request the scales of its adapter (`lora`, by index in this
        # list). One comma-separated flag: llama-server keeps only the last of several.
        scaled = ",".join(f"{adapter_path(ms, a)}:0" for a in ms.spec.adapters)
        defaults.append(("--lora-scaled", scaled))
    image = settings.llamacpp_cuda_image if gpus else settings.llamacpp_image
    return ServerContainer(image, settings.llamacpp_port, merge_flags(defaults, ms.spec.args))


def server_container(ms: ModelServe, settings: OperatorSettings) -> ServerContainer:
    if ms.spec.runtime is Runtime.VLLM:
        return vllm_container(ms, settings)
    if ms.spec.runtime is Runtime.LLAMACPP:
        return llamacpp_container(ms, settings)
    raise ValueError(f"runtime {ms.spec.runtime} runs no container in this cluster")
