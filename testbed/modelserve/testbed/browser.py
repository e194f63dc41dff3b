"""A real browser for the web UI's tests: Debian's Chromium (browsers cannot be
downloaded here), installed with apt-get when missing, driven by Playwright."""

from __future__ import annotations

import shutil
from pathlib import Path

from modelserve.testbed.processes import run

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def find_chromium() -> Path | None:
    for candidate in CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("chromium")
    return Path(found) if found else None


def ensure_chromium() -> Path:
    """Chromium's executable, installed from Debian's packages the first time."""
    found = find_chromium()
    if found is None:
        print("testbed: installing Chromium from Debian's packages", flush=True)
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], env=env)
        found = find_chromium()
    if found is None:
        raise RuntimeError("Chromium is not installed and could not be installed with apt-get")
    return found
