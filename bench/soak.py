"""A bounded mixed load through the gateway for a long while: do memory, open files and
latency stay flat? (issue 20, item 2).

    .venv/bin/python bench/soak.py [--minutes 20] [--window 5] [--clients 3]
        [--max-tokens 12] [--batch-every 240] [--batch-items 12]
        [--download-every 180] [--download-mib 4] [--keep-logs DIR] [--json FILE]

The whole platform as `make dev` runs it (`modelserve.testbed.stack`: the control plane
with KWOK nodes, PostgreSQL, both MinIO stores, the contract, download, jobs services and
the gateway, the operator, Traefik). The load runs as a user of a team, with an API key
and a contract of their own, so every request is decided by the contract service and its
usage recorded, as in a real deployment (the limits are set far above the load), on a
server of their own: SmolLM2-135M on llama.cpp (`POST /serve`, `--parallel 4`), in a pod
that really runs.

`--clients` loops, each picking the next request by weight:

- chat (50%): a chat completion of `--max-tokens` tokens;
- stream (25%): the same, streamed (its time to first byte is kept too);
- scaled (15%): self-consistency with a budget of 3 through the gateway's scaling;
- injected (10%): requests that must fail (an unknown model: 404, a budget of 0: 400),
  counted apart; an answer other than the expected one is an error.

Beside them, a batch of `--batch-items` chat items (the OpenAI Batch API: `/v1/files`,
`/v1/batches`) every `--batch-every` seconds, waited for and its output counted, and a
download every `--download-every` seconds of a new `--download-mib` MiB object from the
upstream store through `POST /downloads`, waited for until `ready`.

Every 15 s the resident memory (VmRSS) and open file descriptors of the gateway, the
contract, download and jobs services and the operator are read from /proc. Printed per
`--window` minutes: per kind the count, errors and latency p50/p95/p99; per process the
memory and descriptors at the window's end. At the end: the growth of each process's
memory and descriptors from the end of the first window (the warm-up) to the end of the
run, and every error seen (the first few of each kind). Nothing asserts: the figures are
printed (and written to `--json`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelserve.testbed.measuring import percentile, proc_status, revision, scratch_folder
from modelserve.testbed.objectstores import UPSTREAM_BUCKET
from modelserve.testbed.polling import wait_for
from modelserve.testbed.serving import serve
from modelserve.testbed.stack import (
    GATEWAY_ADMIN,
    SMOLLM2_SERVE_REQUEST,
    Ports,
    Stack,
    start_stack,
)

ROOT = Path(__file__).resolve().parents[1]
USER, TEAM = "soak", "soak-team"
SERVED = "smollm2-soak"
PASSWORD = secrets.token_urlsafe(18)
SAMPLE_SECONDS = 15.0
# Far above what the load reaches: the contract decides every request, but never refuses.
LIMITS = {
    "requests_per_minute": 100_000,
    "tokens_per_minute": 10_000_000,
    "token_budget": 1_000_000_000,
    "budget_period": "day",
    "max_budget": 8,
    "downloads": True,
}
KINDS = ("chat", "stream", "scaled", "injected", "batch", "download")
WEIGHTS = {"chat": 50, "stream": 25, "scaled": 15, "injected": 10}


@dataclass
class Outcome:
    kind: str
    at: float  # seconds since the start of the load
    seconds: float
    ok: bool
    detail: str = ""
    first_byte: float | None = None  # streams only


@dataclass
class Sample:
    at: float
    rss_kib: dict[str, int]
    fds: dict[str, int]


@dataclass
class Record:
    outcomes: list[Outcome] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


def open_fds(pid: int) -> int:
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except FileNotFoundError:
        return -1


def watched_pids(stack: Stack) -> dict[str, int]:
    processes = {
        "gateway": stack.gateway.process,
        "contract": stack.contract.service.process,
        "download": stack.download.process,
        "jobs": stack.jobs.process,
        "operator": stack.operator.process,
    }
    pids = {name: process.pid for name, process in processes.items()}
    return {name: pid for name, pid in pids.items() if pid is not None}


def chat_body(model: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    question = f"Say a number between {random.randint(1, 50)} and {random.randint(51, 99)}."
    return {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


def set_up_user(stack: Stack) -> tuple[str, list[str]]:
    """The soak's user, in a team, with a contract of their own and a server of their own:
    SmolLM2 on llama.cpp (`POST /serve`, its pod really runs). Their API key and the served
    names. (Not the test bed's llama-cpp-python server: it answers one request at a time,
    so under load the operator's probe of it times out and marks it Degraded.)"""
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.gateway.url, headers=admin, timeout=30) as http:
        made = http.post("/teams", json={"name": TEAM})
        assert made.status_code in (201, 409), made.text
        made = http.post("/users", json={"username": USER, "password": PASSWORD, "teams": [TEAM]})
        assert made.status_code == 201, made.text
    with httpx.Client(base_url=stack.contract.service.url, headers=admin, timeout=30) as http:
        put = http.put(f"/contracts/user/{USER}", json=LIMITS)
        assert put.status_code == 200, put.text
    signed = httpx.post(
        f"{stack.gateway.url}/auth/token",
        json={"username": USER, "password": PASSWORD},
        timeout=30,
    )
    signed.raise_for_status()
    # A sign-in token expires in minutes; a long-running client uses an API key.
    session = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    made = httpx.post(
        f"{stack.gateway.url}/auth/keys",
        json={"name": "soak", "expires_in_days": 1},
        headers=session,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    token = str(made.json()["key"])
    served = serve(stack.gateway.url, token, {**SMOLLM2_SERVE_REQUEST, "served_name": SERVED})
    wanted = {served.served_name}
    user = {"Authorization": f"Bearer {token}"}

    def listed() -> bool:
        models = httpx.get(f"{stack.gateway.url}/v1/models", headers=user, timeout=30).json()
        return wanted <= {entry["id"] for entry in models["data"]}

    wait_for(listed, timeout=60, what=f"the gateway to list {sorted(wanted)} for {USER}")
    return token, sorted(wanted)


class Load:
    def __init__(self, http: httpx.AsyncClient, models: list[str], args: argparse.Namespace):
        self.http = http
        self.models = models
        self.args = args
        self.record = Record()
        self.started = time.monotonic()
        self.ends = self.started + args.minutes * 60

    def now(self) -> float:
        return time.monotonic() - self.started

    def note(self, kind: str, began: float, ok: bool, detail: str = "", **more: Any) -> None:
        ended = time.monotonic()
        at = began - self.started
        self.record.outcomes.append(Outcome(kind, at, ended - began, ok, detail, **more))

    async def chat(self) -> None:
        began = time.monotonic()
        body = chat_body(random.choice(self.models), self.args.max_tokens)
        answer = await self.http.post("/v1/chat/completions", json=body)
        ok = answer.status_code == 200 and bool(answer.json()["choices"])
        self.note("chat", began, ok, "" if ok else f"{answer.status_code} {answer.text[:200]}")

    async def stream(self) -> None:
        began = time.monotonic()
        body = chat_body(random.choice(self.models), self.args.max_tokens, stream=True)
        first: float | None = None
        done = False
        async with self.http.stream("POST", "/v1/chat/completions", json=body) as answer:
            if answer.status_code != 200:
                text = (await answer.aread()).decode(errors="replace")[:200]
                self.note("stream", began, False, f"{answer.status_code} {text}")
                return
            async for line in answer.aiter_lines():
                if first is None and line.startswith("data:"):
                    first = time.monotonic() - began
                done = done or line.strip() == "data: [DONE]"
        self.note("stream", began, done, "" if done else "no [DONE]", first_byte=first)

    async def scaled(self) -> None:
        began = time.monotonic()
        extra = {"budget": 3, "algorithm": "self-consistency"}
        body = chat_body(random.choice(self.models), self.args.max_tokens, **extra)
        answer = await self.http.post("/v1/chat/completions", json=body)
        ok = answer.status_code == 200 and bool(answer.json()["choices"])
        self.note("scaled", began, ok, "" if ok else f"{answer.status_code} {answer.text[:200]}")

    async def injected(self) -> None:
        began = time.monotonic()
        if random.random() < 0.5:
            body, expected = chat_body("no-such-model", 4), 404
        else:
            body, expected = chat_body(random.choice(self.models), 4, budget=0), 400
        answer = await self.http.post("/v1/chat/completions", json=body)
        ok = answer.status_code == expected and "error" in answer.json()
        detail = "" if ok else f"wanted {expected}: {answer.status_code} {answer.text[:200]}"
        self.note("injected", began, ok, detail)

    async def client_loop(self) -> None:
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        while time.monotonic() < self.ends:
            kind = random.choices(kinds, weights)[0]
            began = time.monotonic()
            try:
                await getattr(self, kind)()
            except httpx.HTTPError as error:
                self.note(kind, began, False, f"{type(error).__name__}: {error}")

    async def batch(self, index: int) -> None:
        lines = [
            json.dumps(
                {
                    "custom_id": f"soak-{index}-{item}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": chat_body(self.models[item % len(self.models)], self.args.max_tokens),
                }
            )
            for item in range(self.args.batch_items)
        ]
        began = time.monotonic()
        files = {"file": ("soak.jsonl", ("\n".join(lines) + "\n").encode())}
        uploaded = await self.http.post("/v1/files", data={"purpose": "batch"}, files=files)
        uploaded.raise_for_status()
        made = await self.http.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        made.raise_for_status()
        batch = made.json()
        deadline = time.monotonic() + 600
        while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
            if time.monotonic() > deadline:
                self.note("batch", began, False, f"still {batch['status']} after 600 s")
                return
            await asyncio.sleep(2)
            polled = await self.http.get(f"/v1/batches/{batch['id']}")
            polled.raise_for_status()
            batch = polled.json()
        counts = batch.get("request_counts") or {}
        ok = batch["status"] == "completed" and counts.get("completed") == self.args.batch_items
        if not ok and batch.get("error_file_id"):
            errors = await self.http.get(f"/v1/files/{batch['error_file_id']}/content")
            first = errors.text.splitlines()[0] if errors.text.strip() else ""
            self.note("batch", began, False, f"{batch['status']} {counts}: {first[:300]}")
            return
        if ok:
            output = await self.http.get(f"/v1/files/{batch['output_file_id']}/content")
            rows = [json.loads(line) for line in output.text.splitlines() if line.strip()]
            ids = {row["custom_id"] for row in rows}
            ok = len(rows) == self.args.batch_items == len(ids)
        self.note("batch", began, ok, "" if ok else f"{batch['status']} {counts}")

    async def download(self, stack: Stack, index: int) -> None:
        key = f"soak/{secrets.token_hex(6)}-{index}.bin"
        data = os.urandom(self.args.download_mib * 1024 * 1024)
        sha256 = await asyncio.to_thread(stack.upstream.put, UPSTREAM_BUCKET, key, data)
        began = time.monotonic()
        body = {"bucket": UPSTREAM_BUCKET, "key": key, "sha256": sha256, "name": key}
        queued = await self.http.post("/downloads", json=body)
        if queued.status_code not in (200, 202):
            self.note("download", began, False, f"{queued.status_code} {queued.text[:200]}")
            return
        model_id = queued.json()["model_id"]
        deadline = time.monotonic() + 300
        state = queued.json().get("state")
        while state not in ("ready", "failed", "cancelled") and time.monotonic() < deadline:
            await asyncio.sleep(1)
            polled = await self.http.get(f"/downloads/{model_id}")
            polled.raise_for_status()
            state = polled.json()["state"]
        self.note("download", began, state == "ready", "" if state == "ready" else str(state))

    async def every(self, seconds: float, work: Any) -> None:
        index = 0
        while time.monotonic() + 1 < self.ends:
            began = time.monotonic()
            kind = work.__name__
            try:
                await work(index)
            except (httpx.HTTPError, KeyError, ValueError) as error:
                self.note(kind, began, False, f"{type(error).__name__}: {error}")
            index += 1
            await asyncio.sleep(max(0.0, began + seconds - time.monotonic()))

    async def sample(self, pids: dict[str, int]) -> None:
        while time.monotonic() < self.ends:
            rss = {name: proc_status(pid).get("VmRSS", -1) for name, pid in pids.items()}
            fds = {name: open_fds(pid) for name, pid in pids.items()}
            self.record.samples.append(Sample(self.now(), rss, fds))
            await asyncio.sleep(SAMPLE_SECONDS)
        rss = {name: proc_status(pid).get("VmRSS", -1) for name, pid in pids.items()}
        fds = {name: open_fds(pid) for name, pid in pids.items()}
        self.record.samples.append(Sample(self.now(), rss, fds))


async def run_load(stack: Stack, token: str, models: list[str], args: argparse.Namespace) -> Record:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with httpx.AsyncClient(
        base_url=stack.gateway.url, headers=headers, timeout=300, limits=limits
    ) as http:
        load = Load(http, models, args)
        pids = watched_pids(stack)

        async def download(index: int) -> None:
            await load.download(stack, index)

        await asyncio.gather(
            load.sample(pids),
            *(load.client_loop() for _ in range(args.clients)),
            load.every(args.batch_every, load.batch),
            load.every(args.download_every, download),
        )
        return load.record


def summarise(record: Record, args: argparse.Namespace) -> dict[str, Any]:
    window = args.window * 60
    windows: dict[int, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
    for outcome in record.outcomes:
        windows[int(outcome.at // window)][outcome.kind].append(outcome)
    report: dict[str, Any] = {"windows": [], "errors": {}, "growth": {}}
    for number in sorted(windows):
        row: dict[str, Any] = {"window": number, "kinds": {}}
        for kind in KINDS:
            outcomes = windows[number].get(kind, [])
            if not outcomes:
                continue
            latencies = [o.seconds for o in outcomes if o.ok]
            entry: dict[str, Any] = {
                "count": len(outcomes),
                "errors": sum(not o.ok for o in outcomes),
            }
            if latencies:
                for p in (50, 95, 99):
                    entry[f"p{p}_ms"] = round(percentile(latencies, p) * 1000, 1)
            firsts = [o.first_byte for o in outcomes if o.ok and o.first_byte is not None]
            if firsts:
                entry["first_byte_p50_ms"] = round(percentile(firsts, 50) * 1000, 1)
            row["kinds"][kind] = entry
        ends = [s for s in record.samples if s.at <= (number + 1) * window]
        if ends:
            row["rss_mib"] = {k: round(v / 1024, 1) for k, v in ends[-1].rss_kib.items()}
            row["fds"] = ends[-1].fds
        report["windows"].append(row)
    failed: dict[str, list[str]] = defaultdict(list)
    for outcome in record.outcomes:
        if not outcome.ok:
            failed[outcome.kind].append(f"at {outcome.at:.0f} s: {outcome.detail}")
    report["errors"] = {kind: {"count": len(v), "first": v[:5]} for kind, v in failed.items()}
    warm = [s for s in record.samples if s.at >= window] or record.samples
    if warm:
        first, last = warm[0], record.samples[-1]
        peak = {name: max(s.rss_kib.get(name, -1) for s in warm) for name in first.rss_kib}
        for name in first.rss_kib:
            report["growth"][name] = {
                "rss_mib_after_warmup": round(first.rss_kib[name] / 1024, 1),
                "rss_mib_end": round(last.rss_kib[name] / 1024, 1),
                "rss_mib_peak": round(peak[name] / 1024, 1),
                "fds_after_warmup": first.fds[name],
                "fds_end": last.fds[name],
                "fds_peak": max(s.fds.get(name, -1) for s in warm),
            }
    return report


def show(report: dict[str, Any], args: argparse.Namespace) -> None:
    for row in report["windows"]:
        start, end = row["window"] * args.window, (row["window"] + 1) * args.window
        print(f"\nminutes {start}-{end}")
        print(f"  {'kind':<9} {'count':>6} {'errors':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
        for kind, entry in row["kinds"].items():
            cells = [f"{entry.get(f'p{p}_ms', float('nan')):>9.1f}" for p in (50, 95, 99)]
            extra = (
                f"  first byte p50 {entry['first_byte_p50_ms']:.1f} ms"
                if "first_byte_p50_ms" in entry
                else ""
            )
            print(f"  {kind:<9} {entry['count']:>6} {entry['errors']:>6} {' '.join(cells)}{extra}")
        if "rss_mib" in row:
            processes = ", ".join(
                f"{name} {row['rss_mib'][name]} MiB/{row['fds'][name]} fds" for name in row["fds"]
            )
            print(f"  memory/fds at the end: {processes}")
    print("\nafter warm-up (end of the first window) -> end of the run [peak]")
    for name, growth in report["growth"].items():
        print(
            f"  {name:<9} RSS {growth['rss_mib_after_warmup']} -> {growth['rss_mib_end']} MiB"
            f" [{growth['rss_mib_peak']}], fds {growth['fds_after_warmup']} ->"
            f" {growth['fds_end']} [{growth['fds_peak']}]"
        )
    if report["errors"]:
        print("\nerrors (beyond the injected requests' expected answers):")
        for kind, errors in report["errors"].items():
            print(f"  {kind}: {errors['count']}")
            for line in errors["first"]:
                print(f"    {line}")
    else:
        print("\nerrors: none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--window", type=float, default=5, help="minutes per printed window")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--batch-every", type=float, default=240)
    parser.add_argument("--batch-items", type=int, default=12)
    parser.add_argument("--download-every", type=float, default=180)
    parser.add_argument("--download-mib", type=int, default=4)
    parser.add_argument("--keep-logs", type=Path)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    random.seed(20)
    print(f"soak: revision {revision(ROOT)}, {args.minutes} minutes, {args.clients} clients")
    with (
        scratch_folder("modelserve-soak-", args.keep_logs) as folder,
        contextlib.ExitStack() as resources,
    ):
        started = time.monotonic()
        stack = start_stack(folder, Ports.any(), resources)
        print(f"soak: platform up in {time.monotonic() - started:.0f} s (as {GATEWAY_ADMIN})")
        token, models = set_up_user(stack)
        record = asyncio.run(run_load(stack, token, models, args))
    report = summarise(record, args)
    show(report, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
