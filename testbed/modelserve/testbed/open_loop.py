"""A fixed request rate, whatever the answers take (an open loop): `vegeta`, built from
its Go module (testbed/go/vegeta) like the test bed's other Go programs. A closed loop
(`hey`: each worker waits for its answer) sends less when the server slows, which hides
the latency a queue adds; vegeta keeps sending, with as many connections as it needs,
and reports latencies to the nanosecond."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelserve.testbed.gobuild import GoModule, build

VEGETA = GoModule(
    folder="vegeta",
    module="github.com/tsenart/vegeta/v12",
    binaries={"vegeta": "github.com/tsenart/vegeta/v12"},
)


@dataclass(frozen=True)
class FixedRate:
    rate: float  # requests per second asked for
    sent: int
    throughput: float  # successful answers per second
    p50_ms: float
    p99_ms: float
    success: float  # the share of answers with a 2xx status
    codes: dict[str, int]


def vegeta() -> Path:
    return build(VEGETA) / "vegeta"


def fixed_rate(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    rate: int,
    seconds: float,
    folder: Path,
) -> FixedRate:
    """POST `body` to `url` `rate` times a second for `seconds`; the latencies of all."""
    body_file = folder / "vegeta-body.json"
    body_file.write_bytes(body)
    attack = [str(vegeta()), "attack", f"-rate={rate}/s", f"-duration={seconds}s"]
    attack += [f"-body={body_file}", "-header=Content-Type: application/json", "-timeout=30s"]
    attack += [f"-header={name}: {value}" for name, value in headers.items()]
    attacked = subprocess.run(
        attack, input=f"POST {url}\n".encode(), capture_output=True, check=True
    )
    reported = subprocess.run(
        [str(vegeta()), "report", "-type=json"],
        input=attacked.stdout,
        capture_output=True,
        check=True,
    )
    report = json.loads(reported.stdout)
    latencies = report["latencies"]
    return FixedRate(
        rate=rate,
        sent=int(report["requests"]),
        throughput=float(report["throughput"]),
        p50_ms=latencies["50th"] / 1e6,
        p99_ms=latencies["99th"] / 1e6,
        success=float(report["success"]),
        codes={str(code): int(count) for code, count in report["status_codes"].items()},
    )
