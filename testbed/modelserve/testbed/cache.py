"""Where the test bed keeps what is slow to make: binaries, wheels, virtual environments."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder, outside any checkout so that fresh clones reuse it."""
    configured = os.environ.get("MODELSERVE_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "modelserve"
    root.mkdir(parents=True, exist_ok=True)
    return root


def content_key(*parts: str | bytes) -> str:
    """A short digest of everything that decides what a cached artifact contains."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def repo_root() -> Path:
    """The checkout this code runs from (testbed/modelserve/testbed/cache.py -> root)."""
    return Path(__file__).resolve().parents[3]
