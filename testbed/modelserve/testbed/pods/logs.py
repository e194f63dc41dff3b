"""A container's log as a kubelet keeps it: the CRI format (`<RFC3339 time> stdout F line`),
which KWOK's `Logs` resource serves to `kubectl logs`.

The process writes to a raw file; `CriLog` follows that file and writes each complete
line, stamped with the time it was read, to the container's log.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

POLL = 0.1


def cri_line(text: str, moment: dt.datetime) -> str:
    stamp = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp} stdout F {text}\n"


class CriLog:
    """Follows `raw` into `target` until `done()` holds and nothing is left to read."""

    def __init__(self, raw: Path, target: Path, done: Callable[[], bool]) -> None:
        self._raw, self._target, self._done = raw, target, done
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"log-{raw.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Let it drain what the process wrote, and end."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        pending = b""
        with self._raw.open("rb") as source, self._target.open("a") as target:
            while True:
                chunk = source.read(1 << 16)
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    now = dt.datetime.now(dt.UTC)
                    target.writelines(
                        cri_line(line.decode(errors="replace"), now) for line in lines
                    )
                    target.flush()
                    continue
                if self._stop.is_set() or self._done():
                    if pending:
                        target.write(
                            cri_line(pending.decode(errors="replace"), dt.datetime.now(dt.UTC))
                        )
                    return
                self._stop.wait(POLL)
