"""The node agent (`modelserve-nodeagent`) as a process on the test bed, reading a stand-in
nvidia-smi: no GPU exists here, so the command it runs is a script that prints recorded
output (tests/nodeagent/data/fake_nvidia_smi.py)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from modelserve.testbed.processes import ManagedProcess


@contextlib.contextmanager
def running_nodeagent(
    kubeconfig: Path | str,
    node: str,
    fake_smi: Path,
    folder: Path,
    log_folder: Path,
    **env: str,
) -> Iterator[Path]:
    """`modelserve-nodeagent` for `node` (every second, Leases of 5 s) until the block
    ends (SIGTERM). Yields the file where the fake records each call."""
    calls = folder / f"smi-calls-{node}.txt"
    wrapper = folder / f"nvidia-smi-{node}"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake_smi}" "$@"\n')
    wrapper.chmod(0o755)
    agent = ManagedProcess(
        f"nodeagent-{node}",
        [Path(sys.executable).parent / "modelserve-nodeagent"],
        log_folder / f"nodeagent-{node}.log",
        env={
            "KUBECONFIG": str(kubeconfig),
            "NODEAGENT_NODE_NAME": node,
            "NODEAGENT_NAMESPACE": "modelserve",
            "NODEAGENT_INTERVAL_SECONDS": "1",
            "NODEAGENT_LEASE_SECONDS": "5",
            "NODEAGENT_NVIDIA_SMI": str(wrapper),
            "FAKE_SMI_CALLS": str(calls),
            **env,
        },
    )
    agent.start()
    try:
        yield calls
    finally:
        agent.stop()
