"""A stand-in for `nvidia-smi` on a machine without a GPU (the node agent's tests run it
through NODEAGENT_NVIDIA_SMI). It prints the files beside it for the agent's two queries,
with each GPU's power limit as the last `-pl` set it, and records every call in
$FAKE_SMI_CALLS. $FAKE_SMI_REFUSE=1 makes `-pl` fail as nvidia-smi does without root."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

DATA = Path(__file__).parent
STATE = Path(os.environ["FAKE_SMI_CALLS"]).with_suffix(".limits.json")


def limits() -> dict[str, float]:
    found: dict[str, float] = json.loads(STATE.read_text()) if STATE.exists() else {}
    return found


def main(args: list[str]) -> int:
    with Path(os.environ["FAKE_SMI_CALLS"]).open("a") as calls:
        calls.write(" ".join(args) + "\n")
    if "-pl" in args:
        index, watts = args[args.index("-i") + 1], float(args[args.index("-pl") + 1])
        if os.environ.get("FAKE_SMI_REFUSE") == "1":
            print("Insufficient Permissions for GPU 00000000:4F:00.0")
            return 4
        STATE.write_text(json.dumps({**limits(), index: watts}))
        print(f"Power limit for GPU {index} was set to {watts:.2f} W.")
        return 0
    if args and args[0].startswith("--query-gpu=index,power.min_limit"):
        print((DATA / "nvidia-smi-limits.csv").read_text(), end="")
        return 0
    set_limits = limits()
    for line in (DATA / "nvidia-smi-query.csv").read_text().splitlines():
        fields = line.split(", ")
        if fields[0] in set_limits:
            fields[10] = f"{set_limits[fields[0]]:.2f}"
        print(", ".join(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
