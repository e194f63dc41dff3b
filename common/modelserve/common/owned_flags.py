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
VLLM_FLAGS = frozenset(
    {"--model", "--host", "--port", "--served-model-name", "--api-key", "--download-dir"}
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
        "-dr",
        "--docker-repo",
        "-a",
        "--alias",
        "--api-key",
        "--api-key-file",
    }
)
# llama-server reads the same options from these variables (the flags win over them, but a
# variable for an option the operator does not pass, like the Hugging Face repo, would act).
LLAMACPP_ENV = frozenset(
    {
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
OWNED_ENV = {"vllm": frozenset[str](), "llamacpp": LLAMACPP_ENV}


def flag_name(arg: str) -> str | None:
    """The option an argument sets (`--port=1` and `--port` are `--port`; vLLM also reads
    `--served_model_name` as `--served-model-name`); None for a value."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    name = arg.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    return name


def owned_flags(runtime: str, args: Iterable[str]) -> list[str]:
    """The arguments among `args` that set a flag the operator owns for `runtime`, as given."""
    owned = OWNED_FLAGS.get(runtime, frozenset())
    return [arg for arg in args if flag_name(arg) in owned]


def owned_env(runtime: str, names: Iterable[str]) -> list[str]:
    """The environment variable names among `names` that set an option the operator owns."""
    owned = OWNED_ENV.get(runtime, frozenset())
    return [name for name in names if name in owned]
