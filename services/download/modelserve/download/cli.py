"""`modelserve-download`: run the service, or start a download and follow it.

    modelserve-download                      run the service (same as `serve`)
    modelserve-download get MODEL_ID         copy upstream <MODEL_ID>/ and show progress
    modelserve-download copy --key K         copy one object (or --prefix P, a folder)
    modelserve-download status|cancel|retry MODEL_ID
    modelserve-download list [--state S]

The service's URL comes from --url or MODELSERVE_DOWNLOAD_URL, the bearer token from
--token or MODELSERVE_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx
from tqdm import tqdm

FINISHED = ("ready", "failed", "cancelled")


class CliError(RuntimeError):
    pass


def _client(args: argparse.Namespace) -> httpx.Client:
    if not args.token:
        raise CliError("no token: pass --token or set MODELSERVE_TOKEN")
    return httpx.Client(
        base_url=args.url, headers={"Authorization": f"Bearer {args.token}"}, timeout=30.0
    )


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise CliError(f"{response.status_code} {message}")
    return response.json()


def follow(client: httpx.Client, model_id: str, interval: float = 0.5) -> dict[str, Any]:
    """Show the download's progress until it is ready, failed or cancelled."""
    bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=model_id[:24], file=sys.stderr)
    try:
        while True:
            job: dict[str, Any] = _answer(client.get(f"/status/{model_id}"))
            if job["bytes_total"] is not None and bar.total != job["bytes_total"]:
                bar.total = job["bytes_total"]
            bar.n = job["bytes_done"]
            files = (
                f"{job['files_done']}/{job['files_total']} files"
                if job["files_total"] is not None
                else ""
            )
            bar.set_postfix_str(f"{job['state']} {files}".strip(), refresh=False)
            bar.refresh()
            if job["state"] in FINISHED:
                return job
            time.sleep(interval)
    finally:
        bar.close()


def _finish(client: httpx.Client, job: dict[str, Any], wait: bool) -> int:
    if wait and job["state"] not in FINISHED:
        job = follow(client, job["model_id"])
    if job["state"] == "ready":
        record = _answer(client.get(f"/models/{job['model_id']}"))
        print(json.dumps(record, indent=2))
        return 0
    if job["state"] in ("failed", "cancelled"):
        error = job.get("error") or {}
        print(f"{job['model_id']}: {job['state']}: {error.get('message', '')}", file=sys.stderr)
        return 1
    print(json.dumps(job, indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.command == "get":
            body = {"name": args.name, "sha256": args.sha256}
            job = _answer(client.post(f"/download/{args.model_id}", json=body))
            return _finish(client, job, args.wait)
        if args.command == "copy":
            body = {
                "bucket": args.bucket,
                "key": args.key,
                "prefix": args.prefix,
                "name": args.name,
                "sha256": args.sha256,
                "model_id": args.model_id,
            }
            job = _answer(client.post("/downloads", json=body))
            return _finish(client, job, args.wait)
        if args.command == "status":
            job = _answer(client.get(f"/status/{args.model_id}"))
            return _finish(client, job, args.wait)
        if args.command in ("cancel", "retry"):
            job = _answer(client.post(f"/download/{args.model_id}/{args.command}"))
            return _finish(client, job, args.command == "retry" and args.wait)
        params = {"state": args.state} if args.state else {}
        for job in _answer(client.get("/downloads", params=params)):
            done = f"{job['bytes_done']}/{job['bytes_total'] or '?'} B"
            print(f"{job['model_id']}\t{job['state']}\t{done}\t{job['source']}")
        return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="modelserve-download", description=__doc__.split("\n")[0])
    main.add_argument(
        "--url", default=os.environ.get("MODELSERVE_DOWNLOAD_URL", "http://127.0.0.1:8202")
    )
    main.add_argument("--token", default=os.environ.get("MODELSERVE_TOKEN"))
    commands = main.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service")

    def model_command(name: str, help: str, *, wait: bool = True) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help)
        command.add_argument("model_id")
        if wait:
            command.add_argument(
                "--no-wait", dest="wait", action="store_false", help="do not follow it"
            )
        return command

    get = model_command("get", "copy the upstream model <MODEL_ID>/ and follow it")
    copy = commands.add_parser("copy", help="copy one object or a folder and follow it")
    copy.add_argument("--bucket")
    source = copy.add_mutually_exclusive_group(required=True)
    source.add_argument("--key", help="one object: a single-file model")
    source.add_argument("--prefix", help="a folder: every object under it")
    copy.add_argument("--model-id")
    copy.add_argument("--no-wait", dest="wait", action="store_false")
    for command in (get, copy):
        command.add_argument("--name", help="the model's display name")
        command.add_argument("--sha256", help="the expected SHA-256 of a single file")
    status = model_command("status", "where a download stands", wait=False)
    status.add_argument("--wait", action="store_true", help="follow it until it ends")
    model_command("cancel", "stop a download", wait=False)
    model_command("retry", "queue a failed or cancelled download again")
    listing = commands.add_parser("list", help="downloads, newest first")
    listing.add_argument("--state")
    return main


def run_command(args: argparse.Namespace) -> int:
    """One client command; the exit status (2 for a usage or connection error)."""
    try:
        return _run(args)
    except CliError as error:
        print(f"modelserve-download: {error}", file=sys.stderr)
        return 2
    except httpx.HTTPError as error:
        print(f"modelserve-download: {args.url}: {error}", file=sys.stderr)
        return 2
