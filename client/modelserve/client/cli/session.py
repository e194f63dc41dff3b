"""The CLI's sign-in commands: `login` (a JWT from POST /auth/token, or an API key, saved
for later commands: config.py), `logout`, `whoami`, and `keys create|list|revoke` over
the gateway's /auth/keys."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from pydantic import BaseModel

from modelserve.client.cli import config, output
from modelserve.client.errors import ModelServeError
from modelserve.client.sync_client import Client

# The commands that run before (and without) a saved login.
LOCAL = ("login", "logout")
COMMANDS = ("whoami", "keys")


def add_commands(commands: Any) -> None:
    """Add the sign-in commands to the CLI's subparsers."""
    login = commands.add_parser(
        "login", help="sign in and save the token for later commands (mode 0600)"
    )
    login.add_argument("--username", help="asked for when absent")
    secret = login.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin's first line instead of asking for it",
    )
    secret.add_argument(
        "--api-key-stdin",
        action="store_true",
        help="save an API key (msk_…) read from stdin instead of signing in",
    )
    commands.add_parser("logout", help="delete the saved login")
    commands.add_parser("whoami", help="who the token stands for (GET /auth/me)")
    keys = commands.add_parser("keys", help="one's API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new key: shown once, in this answer")
    create.add_argument("name", help="what the key is for")
    create.add_argument("--expires-in-days", type=int, help="1 to 3650 (default: never)")
    listing = actions.add_parser("list", help="one's keys that are not revoked")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--offset", type=int)
    listing.add_argument("--output", **output.OPTION)
    actions.add_parser("revoke", help="revoke a key by its id").add_argument("key_id")


def _line(stdin: TextIO) -> str:
    return stdin.readline().rstrip("\r\n")


def _username(args: argparse.Namespace, stdin: TextIO, stderr: TextIO) -> str:
    if args.username:
        return str(args.username)
    if args.password_stdin:
        raise ValueError("with --password-stdin, name the user with --username")
    stderr.write("username: ")
    stderr.flush()
    return _line(stdin)


def _anonymous(url: str, timeout: float | None) -> Client:
    """A client for `url` that sends no token (not even $MODELSERVE_TOKEN)."""
    client = Client(url, timeout=timeout)
    client.settings = dataclasses.replace(client.settings, token=None)
    return client


def login(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    stdin: TextIO = sys.stdin,
    stderr: TextIO = sys.stderr,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Sign in (or check the API key given on stdin) and save the token; what was saved,
    less the token."""
    path = config.config_path(env)
    try:
        saved = config.load(path)
    except ModelServeError:
        # Only its URL would be used, and this login writes the file anew.
        saved = None
    url = config.where(args.url, None, env, saved, now or dt.datetime.now(dt.UTC)).url
    if args.api_key_stdin:
        key = _line(stdin).strip()
        if not key:
            raise ValueError("no API key on stdin")
        with Client(url, key, timeout=args.timeout) as client:
            username = client.me().username
        login = config.SavedLogin(url, key, username, None)
    else:
        username = _username(args, stdin, stderr)
        password = _line(stdin) if args.password_stdin else getpass.getpass("password: ", stderr)
        if not username or not password:
            raise ValueError("a username and a password are needed")
        started = now or dt.datetime.now(dt.UTC)
        with _anonymous(url, args.timeout) as client:
            token = client.sign_in(username, password)
        expires = started + dt.timedelta(seconds=token.expires_in)
        login = config.SavedLogin(url, token.access_token, username, expires)
    config.save(path, login)
    shown = login.as_json()
    del shown["token"]
    return {**shown, "config": str(path)}


def logout(env: Mapping[str, str]) -> dict[str, Any]:
    """Forget the saved login (the token itself stays valid until it expires)."""
    path = config.config_path(env)
    return {"logged_out": config.remove(path), "config": str(path)}


def run(client: Client, args: argparse.Namespace) -> BaseModel | list[Any] | dict[str, Any]:
    if args.command == "whoami":
        return client.me()
    action = args.action
    if action == "create":
        created = client.create_key(args.name, expires_in_days=args.expires_in_days)
        print("modelserve: the key is in this answer only: keep it now", file=sys.stderr)
        return created
    if action == "list":
        return client.list_keys(limit=args.limit, offset=args.offset)
    assert action == "revoke", action
    client.revoke_key(args.key_id)
    return {"id": args.key_id, "revoked": True}
