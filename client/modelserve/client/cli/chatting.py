"""`modelserve chat MODEL [MESSAGE]`: one answer, streamed to the terminal as its tokens
arrive (or whole with --no-stream); without MESSAGE, a conversation: each line of stdin
is the user's next turn, answered with everything said before, until EOF.

In JSON (stdout not a terminal, or --output json) the answer is the whole completion's
JSON, as before streaming existed; a conversation prints one completion per line."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from modelserve.client.answers import ChatCompletion
from modelserve.client.sync_client import Client

PROMPT = "> "


def add_command(commands: Any, output: Any) -> None:
    """Add `chat` to the CLI's subparsers (`output`: the --output option's keywords)."""
    chat = commands.add_parser(
        "chat", help="chat with a model: streamed; a conversation on stdin without MESSAGE"
    )
    chat.add_argument("model")
    chat.add_argument("message", nargs="?", help="absent: read the turns from stdin")
    chat.add_argument("--system")
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--temperature", type=float)
    chat.add_argument(
        "--no-stream", dest="stream", action="store_false", help="print the answer once whole"
    )
    chat.add_argument("--output", **output)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    return {key: value for key, value in params.items() if value is not None}


def _said(
    client: Client,
    args: argparse.Namespace,
    messages: list[dict[str, Any]],
    stdout: TextIO,
    stderr: TextIO,
) -> str:
    """Answer `messages` as text on stdout, streamed unless --no-stream; the answer."""
    if not args.stream:
        content = client.chat(args.model, messages, **_params(args)).content
        stdout.write(content + "\n")
        stdout.flush()
        return content
    parts: list[str] = []
    finish: str | None = None
    for chunk in client.chat_stream(args.model, messages, **_params(args)):
        if chunk.content:
            parts.append(chunk.content)
            stdout.write(chunk.content)
            stdout.flush()
        finish = chunk.finish_reason or finish
    stdout.write("\n")
    stdout.flush()
    if finish == "length":
        stderr.write("modelserve: the answer stopped at --max-tokens (finish_reason length)\n")
    return "".join(parts)


def run(
    client: Client,
    args: argparse.Namespace,
    *,
    human: bool,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
) -> ChatCompletion | None:
    """The completion to print as JSON; None when the answer was printed already."""
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    if args.message is not None:
        messages.append({"role": "user", "content": args.message})
        if not human:
            return client.chat(args.model, messages, **_params(args))
        _said(client, args, messages, stdout, stderr)
        return None
    asking = stdin.isatty()
    while True:
        if asking:
            stderr.write(PROMPT)
            stderr.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        if human:
            reply = _said(client, args, messages, stdout, stderr)
        else:
            completion = client.chat(args.model, messages, **_params(args))
            stdout.write(json.dumps(completion.model_dump(mode="json")) + "\n")
            stdout.flush()
            reply = completion.content
        messages.append({"role": "assistant", "content": reply})
    return None
