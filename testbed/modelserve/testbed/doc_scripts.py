"""The shell blocks of a docs page, run as one bash script against `make dev`'s platform.

A page's ```sh blocks are what its readers type; the docs tests run them in order, in
one bash (`set -euo pipefail`, `curl` failing on any HTTP error), with a mark before each
block so that each block's output can be checked apart.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelserve.testbed.polling import wait_for

BLOCK_MARK = "@@doc block {}@@"


@dataclass(frozen=True)
class Block:
    section: str
    heading: str
    text: str

    def commands(self) -> list[str]:
        """The block's commands, continuation lines joined, comments dropped."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [line.strip() for line in joined.splitlines() if line.strip()]


def shell_blocks(markdown: str) -> list[Block]:
    blocks: list[Block] = []
    section = heading = ""
    lines = iter(markdown.splitlines())
    for line in lines:
        if line.startswith("## "):
            section = heading = line[3:].strip()
        elif line.startswith("### "):
            heading = line[4:].strip()
        elif line.strip() == "```sh":
            body = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                body.append(inner)
            blocks.append(Block(section, heading, "\n".join(body)))
    return blocks


def section_text(markdown: str, section: str) -> str:
    start = markdown.index(f"## {section}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end >= 0 else len(markdown)]


def script(blocks: list[Block], root: Path, env_file: Path) -> str:
    """`blocks` as one bash script run from `root`; the page's `.dev/env` is `env_file`."""
    lines = [
        "set -euo pipefail",
        f"cd {root}",
        # As on the page, but an HTTP error fails the script.
        'curl() { command curl --fail-with-body "$@"; }',
    ]
    for number, block in enumerate(blocks):
        lines.append(f"echo '{BLOCK_MARK.format(number)}'")
        lines.append(block.text.replace("source .dev/env", f"source {env_file}"))
    return "\n".join(lines) + "\n"


def outputs(stdout: str, count: int) -> list[str]:
    """Each block's output, by the marks `script` prints."""
    parts = re.split(r"@@doc block (\d+)@@\n", stdout)
    found = {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}
    assert sorted(found) == list(range(count)), stdout
    return [found[i] for i in range(count)]


def json_lines(output: str) -> list[Any]:
    """The JSON values in `output`: each starts a line or follows the one before (curl
    prints no newline after a body)."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    index, after = 0, -1
    while index < len(output):
        if output[index] in "{[" and (index == 0 or output[index - 1] == "\n" or index == after):
            value, after = decoder.raw_decode(output, index)
            found.append(value)
            index = after
        else:
            index += 1
    return found


@dataclass(frozen=True)
class DevPlatform:
    """`make dev`'s platform (`modelserve-testbed up`), for pages whose commands run."""

    root: Path  # the checkout the pages' commands run in
    state: Path  # what `make dev` keeps in .dev/ (its env file: state / "env")

    def env(self) -> dict[str, str]:
        """The variables of its env file (`export KEY=value` lines): GATEWAY_URL, ..."""
        found = {}
        for line in (self.state / "env").read_text().splitlines():
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                key, _, value = words[1].partition("=")
                found[key] = value
        return found

    def run(
        self, blocks: list[Block], folder: Path, env: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Run `blocks` as the page's reader would, in one bash; each block's output by
        its heading. Fails with the script's output when a command fails."""
        path = folder / "page.sh"
        path.write_text(script(blocks, self.root, self.state / "env"))
        ran = subprocess.run(
            ["bash", path],
            capture_output=True,
            text=True,
            timeout=600,
            env={"HOME": str(Path.home()), "PATH": "/usr/local/bin:/usr/bin:/bin", **(env or {})},
        )
        assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
        found = outputs(ran.stdout, len(blocks))
        return dict(zip([block.heading for block in blocks], found, strict=True))


@contextlib.contextmanager
def dev_platform(root: Path, folder: Path) -> Iterator[DevPlatform]:
    """`modelserve-testbed up` on free ports, its state in `folder`, until the block ends."""
    state = folder / "dev"
    cli = Path(sys.executable).parent / "modelserve-testbed"
    log_path = folder / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [cli, "up", "--any-ports", "--state", state], stdout=log, stderr=subprocess.STDOUT
        )
        try:

            def summary_shown() -> bool:
                text = log_path.read_text()
                if up.poll() is not None:
                    tail = "\n".join(text.splitlines()[-40:])
                    raise RuntimeError(f"modelserve-testbed up exited ({up.returncode}):\n{tail}")
                return "Ctrl-C stops everything." in text

            wait_for(summary_shown, timeout=300, what="make dev's summary")
            yield DevPlatform(root, state)
        finally:
            up.terminate()
            up.wait(timeout=120)
