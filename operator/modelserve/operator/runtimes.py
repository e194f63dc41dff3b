"""What each runtime's server container runs: image, port and command-line flags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from modelserve.common.modelserve import ModelServe, Runtime
from modelserve.operator.settings import OperatorSettings

MODEL_DIR = PurePosixPath("/models")


@dataclass(frozen=True)
class ServerContainer:
    image: str
    port: int
    args: tuple[str, ...]


def model_path(ms: ModelServe) -> str:
    """Where the init step leaves the model in the pod: a folder, or the file itself."""
    _, key = ms.spec.model.bucket_and_key()
    if ms.spec.model.is_folder:
        return str(MODEL_DIR / "model")
    return str(MODEL_DIR / PurePosixPath(key).name)


def merge_flags(defaults: Sequence[tuple[str, str | None]], user: Sequence[str]) -> tuple[str, ...]:
    """Our flags, minus any the user sets in `args` themselves, then the user's.

    A default is `(flag, value)` or `(flag, None)` for a switch. The user's args win
    over ours because they are the way to say "not this default".
    """
    given = {arg.split("=", 1)[0] for arg in user if arg.startswith("-")}
    merged: list[str] = []
    for flag, value in defaults:
        if flag in given:
            continue
        merged.extend([flag] if value is None else [flag, value])
    return (*merged, *user)


def vllm_container(ms: ModelServe, settings: OperatorSettings) -> ServerContainer:
    options = ms.spec.vllm
    defaults: list[tuple[str, str | None]] = [
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
    # The image's entrypoint is `vllm serve`; the model path comes first.
    args = (model_path(ms), *merge_flags(defaults, ms.spec.args))
    return ServerContainer(settings.vllm_image, settings.vllm_port, args)


def llamacpp_container(ms: ModelServe, settings: OperatorSettings) -> ServerContainer:
    gpus = ms.spec.resources.gpus
    defaults: list[tuple[str, str | None]] = [
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
    image = settings.llamacpp_cuda_image if gpus else settings.llamacpp_image
    return ServerContainer(image, settings.llamacpp_port, merge_flags(defaults, ms.spec.args))


def server_container(ms: ModelServe, settings: OperatorSettings) -> ServerContainer:
    if ms.spec.runtime is Runtime.VLLM:
        return vllm_container(ms, settings)
    if ms.spec.runtime is Runtime.LLAMACPP:
        return llamacpp_container(ms, settings)
    raise ValueError(f"runtime {ms.spec.runtime} runs no container in this cluster")
