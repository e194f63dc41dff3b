"""`main`: parse, find the gateway and the token (config.py), run the command, print its
answer (output.py) and choose the exit status."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from modelserve.client.arena import commands as arena_commands
from modelserve.client.cli import commands, config, output, serving, session
from modelserve.client.errors import ModelServeError
from modelserve.client.jobs import commands as job_commands
from modelserve.client.settings import TOKEN_VARIABLE, URL_VARIABLES
from modelserve.client.sync_client import Client

DESCRIPTION = "ModelServe's gateway from a shell."


def parser() -> argparse.ArgumentParser:
    return commands.parser(DESCRIPTION)


def _where(args: argparse.Namespace, env: Mapping[str, str]) -> config.Where:
    """The gateway and token of the command; the saved login is read only when the
    arguments and the environment leave one of them open."""
    has_url = bool(args.url or any(env.get(key) for key in URL_VARIABLES))
    has_token = bool(args.token or env.get(TOKEN_VARIABLE))
    saved = None if has_url and has_token else config.load(config.config_path(env))
    return config.where(args.url, args.token, env, saved, dt.datetime.now(dt.UTC))


def _status(args: argparse.Namespace, answer: object, stderr: TextIO) -> int:
    served = serving.exit_status(args, answer, stderr)
    return served if served is not None else job_commands.exit_status(args, answer)


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    args = parser().parse_args(argv)
    env = os.environ if env is None else env
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    terminal = stdout.isatty()
    try:
        if args.command == "login":
            answer: object = session.login(args, env, stdin=stdin, stderr=stderr)
        elif args.command == "logout":
            answer = session.logout(env)
        else:
            where = _where(args, env)
            with Client(where.url, where.token, timeout=args.timeout) as client:
                answer = commands.run(
                    client, args, terminal=terminal, stdin=stdin, stdout=stdout, stderr=stderr
                )
        if answer is not None:
            shown = arena_commands.shown(args, answer)
            print(shown or output.shown(args, answer, terminal=terminal), file=stdout)
    except ModelServeError as error:
        print(json.dumps({"error": error.as_dict()}), file=stderr)
        return 1
    except (ValueError, OSError) as error:
        print(f"modelserve: {error}", file=stderr)
        return 2
    except KeyboardInterrupt:
        print("modelserve: interrupted", file=stderr)
        return 130
    return _status(args, answer, stderr)
