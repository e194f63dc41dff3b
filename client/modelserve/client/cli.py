"""`modelserve`: the gateway's calls from a shell, over `Client`. Every answer is JSON on
stdout; progress bars (uploads, registrations, jobs) and errors go to stderr.

    modelserve health | info | version | gpu | system | power-profile [PROFILE]
    modelserve logs COMPONENT [--lines N]
    modelserve models [--name N] [--tag T]... [--origin O] [--limit L] [--offset O]
    modelserve register MODEL_ID (--upload FILE | --uri S3_URI) [--name] [--source] [--tags]
    modelserve registration MODEL_ID [--wait]
    modelserve set-active MODEL_ID [--reason R] | active [--name N] | history [--name N]
    modelserve serve (--model-name N | --model-uuid U) [--replicas] [--gpus] ...
    modelserve status [SERVER_ID] | stop SERVER_ID
    modelserve chat MODEL MESSAGE [--system S] [--max-tokens N] [--temperature T]
    modelserve jobs list [--type T] [--status S] [--limit L] [--offset O] | stats
    modelserve jobs get|cancel|wait JOB_ID
    modelserve eval run --model M --dataset D [--name N] [--max-samples N] ... [--wait]
    modelserve eval get|examples JOB_ID | list
    modelserve datagen run --model M --num-examples N --output-dir D ... [--wait]
    modelserve datagen get|resume JOB_ID | list
    modelserve generate MODEL PROMPT... [--max-tokens N] [--wait]
    modelserve arena battle PROMPT [--model A --model B] [--max-tokens N] | turn ID PROMPT
    modelserve arena vote BATTLE_ID a|b|tie|both_bad | battles [ID] | votes
    modelserve arena leaderboard [--team T] [--style-control] [--bootstrap N] [--table]

The gateway's URL comes from --url, MODELSERVE_URL or GATEWAY_URL; the token from --token
or MODELSERVE_TOKEN. Exit status: 0, 1 for an error of the platform (its JSON on stderr),
2 for a usage error, 3 when a job waited for ended failed or cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from modelserve.client.arena import commands as arena_commands
from modelserve.client.errors import ModelServeError
from modelserve.client.jobs import commands as job_commands
from modelserve.client.progress import RegistrationBar, UploadBar
from modelserve.client.sync_client import Client


def _json(answer: BaseModel | Sequence[BaseModel]) -> str:
    value: Any = (
        answer.model_dump(mode="json")
        if isinstance(answer, BaseModel)
        else [item.model_dump(mode="json") for item in answer]
    )
    return json.dumps(value, indent=2)


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


def _serve(client: Client, args: argparse.Namespace) -> BaseModel:
    fields = {
        "replicas": args.replicas,
        "gpus": args.gpus,
        "gpu_type": args.gpu_type,
        "runtime": args.runtime,
        "runtime_params": args.runtime_params,
        "served_name": args.served_name,
        "namespace": args.namespace,
    }
    chosen = {key: value for key, value in fields.items() if value is not None}
    return client.serve(model_name=args.model_name, model_uuid=args.model_uuid, **chosen)


def _chat(client: Client, args: argparse.Namespace) -> BaseModel:
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.message})
    params = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    return client.chat(
        args.model, messages, **{key: value for key, value in params.items() if value is not None}
    )


def run(client: Client, args: argparse.Namespace) -> BaseModel | Sequence[BaseModel]:
    """The answer of the command `args` names."""
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
        return client.logs(args.component, args.lines)
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
        return _serve(client, args)
    if command == "status":
        return client.status(args.server_id) if args.server_id else client.status()
    if command == "stop":
        return client.stop(args.server_id)
    if command in job_commands.COMMANDS:
        return job_commands.run(client, args)
    if command == arena_commands.COMMAND:
        return arena_commands.run(client, args)
    assert command == "chat", command
    return _chat(client, args)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="modelserve", description=__doc__.split("\n")[0])
    main.add_argument("--url", help="the gateway (default: $MODELSERVE_URL, $GATEWAY_URL)")
    main.add_argument("--token", help="a JWT or an API key (default: $MODELSERVE_TOKEN)")
    main.add_argument("--timeout", type=float, help="seconds per request (default 60)")
    commands = main.add_subparsers(dest="command", required=True)
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
    logs = commands.add_parser("logs", help="a component's or a server's pod logs")
    logs.add_argument("component", help="a platform component, or a server_id")
    logs.add_argument("--lines", type=int, default=100)
    models = commands.add_parser("models", help="the models one may serve")
    models.add_argument("--name")
    models.add_argument("--tag", action="append", help="repeatable: every one")
    models.add_argument("--origin", choices=("download", "register"))
    models.add_argument("--limit", type=int)
    models.add_argument("--offset", type=int)
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
    history = commands.add_parser("history", help="changes of active versions, newest first")
    history.add_argument("--name")
    history.add_argument("--limit", type=int)
    serve = commands.add_parser("serve", help="serve a model")
    named = serve.add_mutually_exclusive_group(required=True)
    named.add_argument("--model-name")
    named.add_argument("--model-uuid")
    serve.add_argument("--replicas", type=int)
    serve.add_argument("--gpus", type=int)
    serve.add_argument("--gpu-type")
    serve.add_argument("--runtime", choices=("llamacpp", "vllm"))
    serve.add_argument("--runtime-params")
    serve.add_argument("--served-name")
    serve.add_argument("--namespace")
    status = commands.add_parser("status", help="one's servers, or one")
    status.add_argument("server_id", nargs="?")
    stop = commands.add_parser("stop", help="stop a server")
    stop.add_argument("server_id")
    chat = commands.add_parser("chat", help="one chat completion")
    chat.add_argument("model")
    chat.add_argument("message")
    chat.add_argument("--system")
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--temperature", type=float)
    job_commands.add_commands(commands)
    arena_commands.add_commands(commands)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with Client(args.url, args.token, timeout=args.timeout) as client:
            answer = run(client, args)
        print(arena_commands.shown(args, answer) or _json(answer))
    except ModelServeError as error:
        print(json.dumps({"error": error.as_dict()}), file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:
        print(f"modelserve: {error}", file=sys.stderr)
        return 2
    return job_commands.exit_status(args, answer)
