"""Work directories of download attempts: a killed process's are swept, a live one's stay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modelserve.download.workdirs import LOCK, ROOT_LOCK, sweep, workdir

# A process that makes a work directory, writes a sparse "header" into it, says where,
# and waits to be killed.
HOLDER = """
import sys, time
from pathlib import Path
from modelserve.download.workdirs import workdir
with workdir(Path(sys.argv[1]), "download-held-") as path:
    with (path / "header.gguf").open("wb") as head:
        head.truncate(64 << 20)
        head.write(b"x" * (1 << 20))
    print(path, flush=True)
    time.sleep(600)
"""


def hold(root: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_killed_attempts_directory_is_swept_a_live_ones_stays(tmp_path: Path) -> None:
    live, live_dir = hold(tmp_path)
    killed, killed_dir = hold(tmp_path)
    try:
        killed.kill()
        killed.wait()
        assert killed_dir.is_dir()  # a killed process removes nothing

        removed, used = sweep(tmp_path)

        assert removed == 1
        assert 1 << 20 <= used < 2 << 20  # what the sparse file holds, not its length
        assert not killed_dir.exists()
        assert (live_dir / "header.gguf").is_file()
    finally:
        live.terminate()
        live.wait()


def test_this_processes_attempt_stays_until_it_ends(tmp_path: Path) -> None:
    with workdir(tmp_path, "download-mine-") as path:
        (path / "header.gguf").write_bytes(b"gguf")
        assert sweep(tmp_path) == (0, 0)
        assert (path / "header.gguf").read_bytes() == b"gguf"
    assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [ROOT_LOCK]


def test_a_directory_left_before_its_lock_was_made_is_swept(tmp_path: Path) -> None:
    (tmp_path / "download-half-made").mkdir()
    (tmp_path / "download-half-made" / "header.gguf").write_bytes(b"gguf")
    assert sweep(tmp_path)[0] == 1
    assert not (tmp_path / "download-half-made").exists()


def test_files_beside_the_directories_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with workdir(tmp_path, "download-mine-") as path:
        assert (path / LOCK).is_file()
    assert sweep(tmp_path) == (0, 0)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_no_root_no_sweep(tmp_path: Path) -> None:
    assert sweep(tmp_path / "absent") == (0, 0)
