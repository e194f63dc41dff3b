"""The CLI's arguments, and each command as the client's method (`run`): the answer that
main prints, or None when the command printed it already (a streamed chat)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pydantic import BaseModel

from modelserve.client.arena import commands as arena_commands
from modelserve.client.cli import chatting, output, serving, session
from modelserve.client.jobs import commands as job_commands
from modelserve.client.progress import RegistrationBar, UploadBar
from modelserve.client.sync_client import Client

Answer = BaseModel | Sequence[BaseModel] | dict[str, Any]
OUTPUT = output.OPTION


def _register(client: Client, args: argparse.Namespace) -> BaseModel:
    tags = args.tags
    if args.upload is not None:
        with UploadBar(args.upload.rsplit("/", 1)[-1]) as bar:
            job = client.register_model(
                args.model_id,
                source=args.source,
                tags=tags,
                name=args.name,
                upload=args.upload,
                on_progress=bar,
            )
    else:
        job = client.register_model(
            args.model_id, source=args.source, tags=tags, name=args.name, uri=args.uri
        )
    return _wait(client, args.model_id) if args.wait else job


def _wait(client: Client, model_id: str) -> BaseModel:
    with RegistrationBar(model_id) as bar:
        return client.wait_for_registration(model_id, on_update=bar)


def run(
    client: Client,
    args: argparse.Namespace,
    *,
    terminal: bool = False,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> Answer | None:
    """The answer of the command `args` names (`terminal`: whether stdout is one, which
    chooses between a streamed chat and its JSON)."""
    command = args.command
    simple = {
        "health": client.health,
        "info": client.info,
        "version": client.version,
        "gpu": client.gpu_stats,
        "system": client.system_stats,
    }
    if command in simple:
        return simple[command]()
    if command == "power-profile":
        return client.set_power_profile(args.profile) if args.profile else client.power_profile()
    if command == "logs":
        return client.logs(args.component, args.lines, args.since, args.container)
    if command == "models":
        return client.list_models(
            name=args.name, tag=args.tag, origin=args.origin, limit=args.limit, offset=args.offset
        )
    if command == "register":
        return _register(client, args)
    if command == "registration":
        return _wait(client, args.model_id) if args.wait else client.registration(args.model_id)
    if command == "set-active":
        return client.set_active_model(args.model_id, reason=args.reason)
    if command == "active":
        return client.active_models(name=args.name)
    if command == "history":
        return client.history(name=args.name, limit=args.limit)
    if command == "serve":
        return serving.run(client, args, stderr=stderr or sys.stderr)
    if command == "status":
        return client.status(args.server_id) if args.server_id else client.status()
    if command == "stop":
        return client.stop(args.server_id)
    if command in session.COMMANDS:
        return session.run(client, args)
    if command in job_commands.COMMANDS:
        return job_commands.run(client, args)
    if command == arena_commands.COMMAND:
        return arena_commands.run(client, args)
    assert command == "chat", command
    return chatting.run(
        client,
        args,
        human=output.human(args, terminal),
        stdin=stdin or sys.stdin,
        stdout=stdout or sys.stdout,
        stderr=stderr or sys.stderr,
    )


def parser(description: str = "") -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="modelserve", description=description)
    main.add_argument(
        "--url", help="the gateway (default: $MODELSERVE_URL, $GATEWAY_URL, the saved login's)"
    )
    main.add_argument(
        "--token", help="a JWT or an API key (default: $MODELSERVE_TOKEN, the saved login's)"
    )
    main.add_argument("--timeout", type=float, help="seconds per request (default 60)")
    main.add_argument("--output", choices=output.FORMATS, default=None, help=OUTPUT["help"])
    commands = main.add_subparsers(dest="command", required=True)
    session.add_commands(commands)
    for name, help in (
        ("health", "GET /health"),
        ("info", "GET /info"),
        ("version", "GET /version"),
        ("gpu", "GET /gpu: GPU nodes, allocations and live figures"),
        ("system", "GET /system"),
    ):
        commands.add_parser(name, help=help)
    power = commands.add_parser("power-profile", help="read, or (admins) choose, the profile")
    power.add_argument("profile", nargs="?", help="quiet, normal or max")
    logs = commands.add_parser("logs", help="a server's pod logs, or (admins) a component's")
    logs.add_argument("component", help="a server_id, or a platform component")
    logs.add_argument("--lines", type=int, default=100, help="the last N of each (100)")
    logs.add_argument("--since", type=int, help="only the last S seconds' lines")
    logs.add_argument("--container", help="a server's: server (default) or fetch-model")
    logs.add_argument("--output", **OUTPUT)
    models = commands.add_parser("models", help="the models one may serve")
    models.add_argument("--name")
    models.add_argument("--tag", action="append", help="repeatable: every one")
    models.add_argument("--origin", choices=("download", "register"))
    models.add_argument("--limit", type=int)
    models.add_argument("--offset", type=int)
    models.add_argument("--output", **OUTPUT)
    register = commands.add_parser("register", help="register a version and wait for it")
    register.add_argument("model_id")
    checkpoint = register.add_mutually_exclusive_group(required=True)
    checkpoint.add_argument("--upload", help="a local file, uploaded first")
    checkpoint.add_argument("--uri", help="s3://<platform bucket>/<key>, in the store already")
    register.add_argument("--name", help="the model name its versions share")
    register.add_argument("--source", help="a free label, e.g. 4090")
    register.add_argument("--tags", help="comma-separated, e.g. step5000,math")
    register.add_argument("--no-wait", dest="wait", action="store_false")
    registration = commands.add_parser("registration", help="where a registration stands")
    registration.add_argument("model_id")
    registration.add_argument("--wait", action="store_true", help="until it is ready")
    set_active = commands.add_parser("set-active", help="make a version its name's active one")
    set_active.add_argument("model_id")
    set_active.add_argument("--reason")
    active = commands.add_parser("active", help="active versions and their servers")
    active.add_argument("--name")
    active.add_argument("--output", **OUTPUT)
    history = commands.add_parser("history", help="changes of active versions, newest first")
    history.add_argument("--name")
    history.add_argument("--limit", type=int)
    history.add_argument("--output", **OUTPUT)
    serving.add_command(commands, OUTPUT)
    status = commands.add_parser("status", help="one's servers, or one")
    status.add_argument("server_id", nargs="?")
    status.add_argument("--output", **OUTPUT)
    stop = commands.add_parser("stop", help="stop a server")
    stop.add_argument("server_id")
    chatting.add_command(commands, OUTPUT)
    job_commands.add_commands(commands)
    arena_commands.add_commands(commands)
    return main
