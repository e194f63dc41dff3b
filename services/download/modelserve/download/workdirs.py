"""Work directories of download attempts, and what killed attempts left of them.

An attempt keeps the first bytes of a GGUF file (up to `DOWNLOAD_GGUF_HEADER_BYTES`) in a
directory of its own under `DOWNLOAD_WORK_DIR`, removed when the attempt ends. A process
that is killed removes nothing, and in a pod `/tmp` is an emptyDir that outlives a
restarted container: every killed attempt would leave its bytes there until the pod goes.

So each directory holds a lock file, locked (`flock`) while its attempt runs; the kernel
drops the lock when the process dies, however it dies. `sweep` removes the directories
whose lock it can take. Several services may share the root (replicas on one host): the
root's own lock keeps a directory from being swept while it is made (made under a shared
lock, swept under an exclusive one).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)
LOCK = ".attempt.lock"
ROOT_LOCK = ".root.lock"


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        yield  # closing the file releases the lock


@contextlib.contextmanager
def workdir(root: Path, prefix: str) -> Iterator[Path]:
    """A new directory under `root` for one attempt, locked while it is used and removed
    after it. Made and removed under the root's shared lock, so that `sweep` never meets
    one half made or half removed by a live process."""
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        with _locked(root / ROOT_LOCK, fcntl.LOCK_SH):
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
            held.enter_context(_locked(path / LOCK, fcntl.LOCK_EX))
        try:
            yield path
        finally:
            with _locked(root / ROOT_LOCK, fcntl.LOCK_SH):
                shutil.rmtree(path)  # its lock still held: no sweep takes it meanwhile


def sweep(root: Path) -> tuple[int, int]:
    """Remove what attempts of dead processes left under `root`: (directories, bytes on
    disk). The directories of running attempts, this process's or another's, stay."""
    if not root.is_dir():
        return 0, 0
    removed = used = 0
    with _locked(root / ROOT_LOCK, fcntl.LOCK_EX):
        for path in root.iterdir():
            if not path.is_dir() or path.is_symlink():
                continue
            if (path / LOCK).exists():
                try:
                    with _locked(path / LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB):
                        size = _disk_usage(path)
                        shutil.rmtree(path)
                except BlockingIOError:
                    continue  # an attempt running now
            else:  # a process killed before it locked it, or while it removed it
                size = _disk_usage(path)
                shutil.rmtree(path)
            removed += 1
            used += size
    return removed, used


def _disk_usage(path: Path) -> int:
    """Bytes `path`'s files take on disk (a sparse header file counts what it holds)."""
    return sum(f.lstat().st_blocks * 512 for f in path.rglob("*") if f.is_file())
