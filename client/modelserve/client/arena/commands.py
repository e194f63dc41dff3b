"""The CLI's arena commands (`modelserve arena …`): their arguments, and each as the
client's method. A battle's answers are drawn on stderr as they stream, each side's lines
prefixed `A │` and `B │`; the answer is JSON on stdout, as for every command (a streamed
turn's: its events put together, as `stream` false answers). `leaderboard --table` prints
a table instead."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from pydantic import BaseModel

from modelserve.client.arena.answers import SIDES, VOTES, BattleEvent, Leaderboard
from modelserve.client.arena.events import TurnCollector
from modelserve.client.sync_client import Client

COMMAND = "arena"


def add_commands(commands: Any) -> None:
    """Add `arena` and its actions to the CLI's subparsers (`argparse`'s
    `_SubParsersAction`)."""
    arena = commands.add_parser("arena", help="anonymous battles, votes and leaderboards")
    actions = arena.add_subparsers(dest="action", required=True)
    battle = actions.add_parser("battle", help="two models answer a prompt side by side")
    battle.add_argument("prompt")
    battle.add_argument(
        "--model",
        action="append",
        help="twice, side a first: the two to compare (the vote then does not count); "
        "without, two drawn at random and hidden until the vote",
    )
    battle.add_argument("--system", help="a system message before the prompt")
    _answering(battle)
    turn = actions.add_parser("turn", help="the next turn of an open battle")
    turn.add_argument("battle_id")
    turn.add_argument("prompt")
    _answering(turn)
    vote = actions.add_parser("vote", help="vote on a battle: both models revealed")
    vote.add_argument("battle_id")
    vote.add_argument("vote", choices=VOTES)
    battles = actions.add_parser("battles", help="one's battles, newest first, or one")
    battles.add_argument("battle_id", nargs="?")
    battles.add_argument("--limit", type=int)
    battles.add_argument("--after", help="the last id of the previous page")
    votes = actions.add_parser("votes", help="one's votes (an admin's: everyone's)")
    votes.add_argument("--counts", choices=("true", "false"), help="only those that do, or not")
    votes.add_argument("--voter", help="admins: one user's")
    votes.add_argument("--limit", type=int)
    votes.add_argument("--after", help="the last battle_id of the previous page")
    board = actions.add_parser("leaderboard", help="Bradley-Terry ratings, global or a team's")
    board.add_argument("--team")
    board.add_argument("--style-control", action="store_true", help="length and markdown out")
    board.add_argument("--bootstrap", type=int, help="resamples for the 95%% intervals")
    board.add_argument("--table", action="store_true", help="a table instead of JSON")


def _answering(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-tokens", type=int, help="each side's, at most")
    parser.add_argument("--temperature", type=float)


class SideBySide:
    """A streamed turn's events drawn on `out` as they come: each side's answer a line at
    a time, prefixed `A │` or `B │` (the two interleave as they stream), and its end."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._pending = {side: "" for side in SIDES}

    def __call__(self, event: BattleEvent) -> None:
        if event.type == "loading":  # which side is not said
            self._print("a model of the battle is being woken")
            return
        side = event.side
        if side not in self._pending:
            return
        label = side.upper()
        if event.type == "delta":
            lines = (self._pending[side] + (event.content or "")).split("\n")
            self._pending[side] = lines.pop()
            for line in lines:
                self._print(f"{label} │ {line}")
        elif event.type == "done":
            if self._pending[side]:
                self._print(f"{label} │ {self._pending[side]}")
            self._pending[side] = ""
            self._print(f"{label} └ ({event.finish_reason})")

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)


def _streamed(events: Any, out: TextIO) -> BaseModel:
    """The turn of `events`, drawn on `out` as they come, then how to go on."""
    collector, drawn = TurnCollector(), SideBySide(out)
    for event in events:
        drawn(event)
        collector.add(event)
    turn = collector.turn()
    print(
        f"{turn.id}, turn {turn.turn}: modelserve arena vote {turn.id} a|b|tie|both_bad "
        f'(or another turn: modelserve arena turn {turn.id} "…")',
        file=out,
        flush=True,
    )
    return turn


def _battle(client: Client, args: argparse.Namespace) -> BaseModel:
    models: list[str] | None = args.model
    if models is not None and len(models) != 2:
        raise ValueError("name two models (--model twice, side a first), or none")
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    events = client.battle(
        messages, models=models, max_tokens=args.max_tokens, temperature=args.temperature
    )
    return _streamed(events, sys.stderr)


def run(client: Client, args: argparse.Namespace) -> BaseModel:
    """The answer of the arena action `args` names."""
    action = args.action
    if action == "battle":
        return _battle(client, args)
    if action == "turn":
        messages = [{"role": "user", "content": args.prompt}]
        events = client.battle_turn(
            args.battle_id, messages, max_tokens=args.max_tokens, temperature=args.temperature
        )
        return _streamed(events, sys.stderr)
    if action == "vote":
        return client.vote(args.battle_id, args.vote)
    if action == "battles":
        if args.battle_id:
            return client.get_battle(args.battle_id)
        return client.list_battles(limit=args.limit, after=args.after)
    if action == "votes":
        counts = None if args.counts is None else args.counts == "true"
        return client.list_votes(
            counts=counts, voter=args.voter, limit=args.limit, after=args.after
        )
    assert action == "leaderboard", action
    return client.leaderboard(
        team=args.team, style_control=args.style_control, bootstrap=args.bootstrap
    )


def table(board: Leaderboard) -> str:
    """A leaderboard as a table: rank, model, rating, 95% interval, votes, win rate, Elo;
    then what it counted and left out."""
    rows = [("rank", "model", "rating", "95% CI", "votes", "win rate", "elo")]
    for standing in board.models:
        rows.append(
            (
                str(standing.rank),
                standing.model,
                f"{standing.rating:.1f}",
                f"[{standing.ci.lower:.1f}, {standing.ci.upper:.1f}]",
                str(standing.votes),
                f"{standing.win_rate:.1%}",
                f"{standing.elo:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 1 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    name = f"team {board.team}" if board.team is not None else board.scope
    excluded = ", ".join(f"{reason} {n}" for reason, n in sorted(board.excluded.items()))
    footer = f"{name}: {board.votes} counted votes, {board.bootstrap_rounds} resamples"
    if board.style_control:
        footer += ", style control"
    lines.append(footer + (f"; not counted: {excluded}" if excluded else ""))
    return "\n".join(lines)


def shown(args: argparse.Namespace, answer: object) -> str | None:
    """What the CLI prints for `answer` instead of its JSON: the table of
    `leaderboard --table`; None for every other command."""
    if getattr(args, "command", None) == COMMAND and getattr(args, "table", False):
        assert isinstance(answer, Leaderboard), type(answer)
        return table(answer)
    return None
