"""What the CLI prints on stdout: JSON (for scripts: the default when stdout is not a
terminal, and for every command that is not a listing) or the human form (a table for
listings, a log's lines as text), chosen by --output or by whether stdout is a terminal."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import BaseModel

from modelserve.client.answers import Logs
from modelserve.client.cli import tables

FORMATS = ("table", "json", "text")
# --output on a command (after its name) as well as before it: SUPPRESS keeps a
# command's parser from overwriting the main one's choice when it is not given.
OPTION: dict[str, Any] = {
    "choices": FORMATS,
    "default": argparse.SUPPRESS,
    "help": "table (or text): for people; json: for scripts (the default when piped)",
}
# The commands whose human form a terminal gets by default: the listings, and logs.
HUMAN_BY_DEFAULT = frozenset(
    {
        "models",
        "status",
        "keys list",
        "jobs list",
        "active",
        "history",
        "eval list",
        "datagen list",
        "logs",
        "chat",
    }
)


def kind_of(args: argparse.Namespace) -> str:
    """The command as the output knows it: `keys list`, `jobs list`, `models`, …"""
    action = getattr(args, "action", None)
    command: str = args.command
    return f"{command} {action}" if isinstance(action, str) else command


def human(args: argparse.Namespace, terminal: bool) -> bool:
    """Whether stdout gets the human form: --output table (or text) asks for it, --output
    json for JSON; else a terminal gets it for the commands of HUMAN_BY_DEFAULT."""
    chosen = getattr(args, "output", None)
    if chosen is not None:
        return bool(chosen != "json")
    return terminal and kind_of(args) in HUMAN_BY_DEFAULT


def as_json(answer: Any) -> str:
    if isinstance(answer, BaseModel):
        value: Any = answer.model_dump(mode="json")
    elif isinstance(answer, list | tuple):
        value = [item.model_dump(mode="json") if isinstance(item, BaseModel) else item
                 for item in answer]  # fmt: skip
    else:
        value = answer
    return json.dumps(value, indent=2)


def log_text(logs: Logs) -> str:
    """Each container's lines under a `==> namespace/pod (container) <==` heading, as
    `tail` heads several files."""
    parts = []
    for pod in logs.pods:
        parts.append(f"==> {pod.namespace}/{pod.pod} ({pod.container}) <==")
        parts.extend(pod.lines)
    return "\n".join(parts)


def shown(args: argparse.Namespace, answer: Any, *, terminal: bool) -> str:
    """What stdout gets for `answer`."""
    if not human(args, terminal):
        return as_json(answer)
    if isinstance(answer, Logs):
        return log_text(answer)
    return tables.table(kind_of(args), answer)
