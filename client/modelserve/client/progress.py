"""Progress bars on stderr for the CLI: bytes of an upload, and a registration's copy
as the platform reports it (stdout keeps the JSON answer alone)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Never

from tqdm import tqdm

from modelserve.client.answers import Registration


def _bar(description: str) -> tqdm[Never]:
    return tqdm(
        unit="B", unit_scale=True, unit_divisor=1024, desc=description[:24], file=sys.stderr
    )


class UploadBar:
    """A `Progress` for Client.upload and register_model: (bytes sent, bytes in all)."""

    def __init__(self, description: str) -> None:
        self._bar = _bar(description)

    def __call__(self, done: int, total: int) -> None:
        if self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> UploadBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._bar.close()


class RegistrationBar:
    """An `on_update` for wait_for_registration: bytes copied and the job's state."""

    def __init__(self, description: str) -> None:
        self._bar = _bar(description)

    def __call__(self, job: Registration) -> None:
        if job.bytes_total is not None and self._bar.total != job.bytes_total:
            self._bar.total = job.bytes_total
        self._bar.n = job.bytes_done
        self._bar.set_postfix_str(job.state, refresh=False)
        self._bar.refresh()

    def __enter__(self) -> RegistrationBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._bar.close()
