"""`modelserve-testbed up` stops when a script signals `make` alone (make's own pid)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import outside_make

# What `up` does, in a recipe of its own: stop on SIGTERM (which make passes on to its
# child) or once ParentWatch sees the parent going (make does not pass SIGINT on).
CHILD = """
import signal, sys, time
from modelserve.testbed.cli import ParentWatch
def stop(*_):
    print("parent is going: stopping", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
watch = ParentWatch()
print("watching", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    if watch.gone():
        print("parent is going: stopping", flush=True)
        sys.exit(0)
    time.sleep(0.1)
print("never noticed", flush=True)
sys.exit(3)
"""


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_make_signalled_by_a_script_stops_its_child(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "Makefile").write_text(f"dev:\n\t{sys.executable} child.py\n")
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "dev"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=outside_make(),
            # As from a terminal: a shell's background job (`cmd &`, as a CI script may
            # start the tests) ignores SIGINT, and make would inherit that.
            preexec_fn=_default_signals,
        )
        try:
            wait_for(lambda: "watching" in log.read_text(), timeout=120, what="the child to start")
            make.send_signal(sig)  # to make alone, as a script does: not to its group
            make.wait(timeout=60)
        finally:
            if make.poll() is None:
                make.kill()
    assert "parent is going: stopping" in log.read_text(), log.read_text()
