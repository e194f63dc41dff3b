"""The model-server flags the operator sets itself, which a ModelServe's `args` may not set.

The operator gives each server its model, its address and its served name
(`modelserve.operator.runtimes`); a user's `args` that set them again would point the
server at other weights (`--model`, llama.cpp's `-hf`), another port or name, or lock the
gateway out with an API key. The admission webhook refuses such args, naming the flag, and
the operator may refuse them too. Pure data and one pure function: no imports of either.
"""

from __future__ import annotations

from collections.abc import Iterable

# vLLM (`vllm serve <model> …`): the model comes first as a positional argument.
# --lora-modules names the adapters (spec.adapters): a name the gateway does not know of.
# Where media may be fetched from is the platform's (any caller's request can name a URL
# that the server then fetches inside the cluster): OPERATOR_VLLM_ALLOWED_MEDIA_DOMAINS,
# and no local files.
VLLM_FLAGS = frozenset(
    {
        "--model",
        "--host",
        "--port",
        "--served-model-name",
        "--api-key",
        "--download-dir",
        "--lora-modules",
        "--allowed-media-domains",
        "--allowed-local-media-path",
    }
)
# llama.cpp's llama-server: short and long names of the same options.
LLAMACPP_FLAGS = frozenset(
    {
        "-m",
        "--model",
        "--host",
        "--port",
        "-hf",
        "-hfr",
        "--hf-repo",
        "-hff",
        "--hf-file",
        "-hfv",
        "-hfrv",
        "--hf-repo-v",
        "-hffv",
        "--hf-file-v",
        "-mu",
        "--model-url",
        "-hfd",
        "-hfrd",
        "--hf-repo-draft",
        "-mmu",
        "--mmproj-url",
        "-dr",
        "--docker-repo",
        "-a",
        "--alias",
        "--api-key",
        "--api-key-file",
        # The adapters of spec.adapters, in the order the gateway's per-request `lora` ids
        # count them: another adapter would shift the ids or apply to every request.
        "--lora",
        "--lora-scaled",
    }
)
# llama-server reads the same options from these variables (the flags win over them, but a
# variable for an option the operator does not pass, like the Hugging Face repo, would act).
# Those of the owned flags, and of the other downloads it can make: a draft model from
# Hugging Face, a projector from a URL.
LLAMACPP_ENV = frozenset(
    {
        "LLAMA_ARG_HFD_REPO",
        "LLAMA_ARG_HF_REPO_DRAFT",
        "LLAMA_ARG_MMPROJ_URL",
        "LLAMA_ARG_MODELS_DIR",
        "LLAMA_ARG_MODELS_PRESET",
        "LLAMA_ARG_MODEL",
        "LLAMA_ARG_MODEL_URL",
        "LLAMA_ARG_HF_REPO",
        "LLAMA_ARG_HF_FILE",
        "LLAMA_ARG_HF_REPO_V",
        "LLAMA_ARG_HF_FILE_V",
        "LLAMA_ARG_DOCKER_REPO",
        "LLAMA_ARG_ALIAS",
        "LLAMA_ARG_HOST",
        "LLAMA_ARG_PORT",
        "LLAMA_API_KEY",
        "LLAMA_ARG_API_KEY_FILE",
    }
)
OWNED_FLAGS = {"vllm": VLLM_FLAGS, "llamacpp": LLAMACPP_FLAGS}
# What only platform admins may set: where a server takes code or weights from besides
# the model the operator fetched (a tokenizer or draft model of the Hugging Face hub, the
# hub itself, code of a repository run in the server). A tenant's server runs its model,
# offline: the operator sets HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 for vLLM.
ADMIN_FLAGS = {
    "vllm": frozenset(
        {
            "--trust-remote-code",
            "--tokenizer",
            "--tokenizer-revision",
            "--revision",
            "--code-revision",
            "--hf-config-path",
            "--hf-overrides",
            "--hf-token",
            "--speculative-config",
        }
    ),
}
ADMIN_ENV = {
    "vllm": frozenset({"HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"}),
}
# Every runtime: the NVIDIA container runtime gives a container the GPUs these name
# (`NVIDIA_VISIBLE_DEVICES=all`: every GPU of the node, other tenants' too), and the device
# plugin sets them for the GPUs the pod was given.
GPU_ENV_PREFIX = "NVIDIA_"
# vLLM reads its API key from the environment as well as from --api-key; the operator
# turns off redirects of media URLs (a public URL that redirects into the cluster).
VLLM_ENV = frozenset({"VLLM_API_KEY", "VLLM_MEDIA_URL_ALLOW_REDIRECTS"})
OWNED_ENV = {"vllm": VLLM_ENV, "llamacpp": LLAMACPP_ENV}
# vLLM parses its options with argparse, which takes any unambiguous prefix of a long
# option (`--hos` for `--host`); llama-server's own parser takes only whole names.
ABBREVIATING = frozenset({"vllm"})


def flag_name(arg: str) -> str | None:
    """The option an argument sets (`--port=1` and `--port` are `--port`; vLLM also reads
    `--served_model_name` as `--served-model-name`); None for a value."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    name = arg.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    return name


def owned_flags(runtime: str, args: Iterable[str], *, admin: bool = True) -> list[str]:
    """The arguments among `args` that set a flag the operator owns for `runtime`, as given
    (for anyone but an admin (`admin` False), one of ADMIN_FLAGS too); for a runtime that
    takes abbreviations, a long option that begins such a one too."""
    owned = OWNED_FLAGS.get(runtime, frozenset())
    if not admin:
        owned = owned | ADMIN_FLAGS.get(runtime, frozenset())
    abbreviating = runtime in ABBREVIATING

    def sets_owned(arg: str) -> bool:
        name = flag_name(arg)
        if name is None:
            return False
        if name in owned:
            return True
        return (
            abbreviating
            and name.startswith("--")
            and any(flag.startswith(name) for flag in owned if flag.startswith("--"))
        )

    return [arg for arg in args if sets_owned(arg)]


def owned_env(runtime: str, names: Iterable[str], *, admin: bool = True) -> list[str]:
    """The environment variable names among `names` that set an option the operator owns
    (for anyone but an admin, one of ADMIN_ENV too), or the GPUs the container sees
    (`NVIDIA_*`, for every runtime)."""
    owned = OWNED_ENV.get(runtime, frozenset())
    if not admin:
        owned = owned | ADMIN_ENV.get(runtime, frozenset())
    return [name for name in names if name in owned or name.startswith(GPU_ENV_PREFIX)]


def env_prefix_clash(runtime: str, prefix: str, *, admin: bool = True) -> str | None:
    """An owned variable (for anyone but an admin, one of ADMIN_ENV too) that keys put under
    `prefix` (`envFrom`, whose keys are not known beforehand) could set, or None: a prefix
    must begin no such name, and be begun by no GPU variable's prefix nor begin with it."""
    owned = OWNED_ENV.get(runtime, frozenset())
    if not admin:
        owned = owned | ADMIN_ENV.get(runtime, frozenset())
    clash = sorted(name for name in owned if name.startswith(prefix))
    if clash:
        return clash[0]
    if GPU_ENV_PREFIX.startswith(prefix) or prefix.startswith(GPU_ENV_PREFIX):
        return f"{GPU_ENV_PREFIX}VISIBLE_DEVICES"
    return None


def expanded_args(args: Iterable[str]) -> list[str]:
    """The arguments among `args` that Kubernetes would expand (`$(NAME)`, from the
    container's environment) when it starts the container: after every check of the args,
    so that `$(A)` with `A=--api-key=x` in `spec.env` would set an owned flag unseen. An
    escaped `$$(` is refused too (the value itself can be written instead)."""
    return [arg for arg in args if "$(" in arg]
