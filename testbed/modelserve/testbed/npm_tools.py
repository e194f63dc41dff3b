"""Node programs a benchmark runs beside the platform (Portkey's gateway), each installed
from the npm registry once per version into a folder of its own in the cache, as
`venvs` does for Python tools: their dependencies never meet the web UI's."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from modelserve.testbed.cache import cache_root, content_key
from modelserve.testbed.processes import run


def npm_package(package: str, version: str) -> Path:
    """The installed folder of `package` at `version` (node_modules/<package>), with its
    dependencies, `npm install`ed the first time. npm's downloads are cached beside the
    test bed's other builds, as the Makefile does for the web UI."""
    key = content_key(package, version, run(["node", "--version"]).strip())
    safe = package.replace("@", "").replace("/", "-")
    prefix = cache_root() / "npm-tools" / f"{safe}-{version}-{key}"
    installed = prefix / "node_modules" / package
    if not (prefix / ".complete").exists():
        print(f"testbed: installing {package} {version} once per machine", flush=True)
        started = time.monotonic()
        shutil.rmtree(prefix, ignore_errors=True)
        prefix.mkdir(parents=True)
        run(
            [
                "npm",
                "install",
                "--prefix",
                prefix,
                "--no-audit",
                "--no-fund",
                "--cache",
                cache_root() / "npm",
                f"{package}@{version}",
            ],
            timeout=600,
        )
        (prefix / ".complete").write_text(f"{time.monotonic() - started:.0f}s\n")
    return installed
