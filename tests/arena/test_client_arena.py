"""modelserve.client's arena methods and the CLI's `arena` commands on the real path: the
gateway and the contract service as processes, SmolLM2 under the two names of
`arena_platform` (the only models its users may battle)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.client import AsyncClient, Client, ModelServeError
from modelserve.client.arena import BattleEvent
from modelserve.client.arena.events import TurnCollector
from modelserve.client.cli import main
from modelserve.testbed.arena_platform import ArenaPlatform

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]

COUNT = [{"role": "user", "content": "Count from 1 to 5."}]
TOKENS = 8


def token_of(platform: ArenaPlatform, name: str) -> str:
    platform.user(name).close()
    return platform._users[name]


def client_of(platform: ArenaPlatform, name: str) -> Client:
    return Client(platform.gateway.url, token_of(platform, name), timeout=120)


def by_type(events: list[BattleEvent]) -> dict[str, list[BattleEvent]]:
    found: dict[str, list[BattleEvent]] = {}
    for event in events:
        found.setdefault(event.type, []).append(event)
    return found


def test_a_streamed_battle_a_vote_and_the_leaderboard(arena_platform: ArenaPlatform) -> None:
    with client_of(arena_platform, "client-alice") as alice:
        events = list(alice.battle(COUNT, max_tokens=TOKENS))
        typed = by_type(events)
        assert events[0].type == "battle" and events[-1].type == "turn", events
        battle_id = events[0].id
        assert battle_id is not None and battle_id.startswith("battle-")
        assert {event.side for event in typed["delta"]} == {"a", "b"}, events
        assert sorted(str(event.side) for event in typed["done"]) == ["a", "b"]
        (turn,) = typed["turn"]
        assert (turn.id, turn.turn) == (battle_id, 1)
        assert turn.vote == f"/arena/battles/{battle_id}/vote"

        battle = alice.get_battle(battle_id)
        assert (battle.status, battle.turns, battle.models, battle.anonymous) == (
            "open",
            1,
            None,
            True,
        )
        for side in ("a", "b"):
            said = "".join(e.content or "" for e in typed["delta"] if e.side == side)
            answered = getattr(battle.conversations, side)[-1]
            assert answered == {"role": "assistant", "content": said}

        before = alice.leaderboard(bootstrap=0)
        voted = alice.vote(battle_id, "a")
        assert (voted.battle_id, voted.vote, voted.voter, voted.scope) == (
            battle_id,
            "a",
            "client-alice",
            "global",
        )
        assert {voted.models.a, voted.models.b} == set(arena_platform.models)
        assert voted.models.a != voted.models.b
        assert alice.get_battle(battle_id).models == voted.models

        with pytest.raises(ModelServeError) as again:
            alice.vote(battle_id, "b")
        assert (again.value.status, again.value.code) == (409, "already_voted")

        listed = alice.list_battles(limit=5)
        assert [b.id for b in listed.data] == [battle_id] and listed.has_more is False
        (kept,) = alice.list_votes().data
        assert kept.battle_id == battle_id and kept.models == voted.models

        board = alice.leaderboard(bootstrap=10)
        assert (board.scope, board.team, board.bootstrap_rounds) == ("global", None, 10)
        wins = {standing.model: standing.wins for standing in before.models}
        rows = {standing.model: standing for standing in board.models}
        if voted.counts:  # the other tests' votes are either excluded or all-round ties
            assert board.votes == before.votes + 1 and board.excluded == before.excluded
            assert set(rows) == set(arena_platform.models)
            winner, loser = voted.models.a, voted.models.b
            assert rows[winner].wins == wins.get(winner, 0) + 1
            if before.votes == 0:
                assert rows[winner].rating > rows[loser].rating
        else:  # an answer named SmolLM or Hugging Face: kept, not counted
            assert voted.excluded_because == "identity_revealed" and voted.revealed
            reason = "identity_revealed"
            assert board.votes == before.votes
            assert board.excluded[reason] == before.excluded.get(reason, 0) + 1


def test_a_battle_of_named_models_whole_then_a_streamed_turn(
    arena_platform: ArenaPlatform,
) -> None:
    first, second = arena_platform.models
    with client_of(arena_platform, "client-bob") as bob:
        whole = bob.battle(COUNT, models=[second, first], max_tokens=TOKENS, stream=False)
        assert whole.turn == 1 and whole.created is not None
        assert whole.answers.a.content and whole.answers.b.content
        more = [{"role": "user", "content": "Now from 6 to 9."}]
        events = list(bob.battle_turn(whole.id, more, max_tokens=TOKENS))
        assert events[0].type == "battle" and events[0].turn == 2
        assert events[-1].type == "turn" and events[-1].turn == 2
        voted = bob.vote(whole.id, "tie")
        assert (voted.models.a, voted.models.b) == (second, first)
        assert (voted.counts, voted.excluded_because) == (False, "models_chosen")
        (excluded,) = bob.list_votes(counts=False).data
        assert excluded.battle_id == whole.id
        assert bob.list_votes(counts=True).data == []
        with pytest.raises(ModelServeError) as closed:
            list(bob.battle_turn(whole.id, more, max_tokens=TOKENS))
        assert (closed.value.status, closed.value.code) == (409, "battle_closed")
        with pytest.raises(ModelServeError) as missing:
            bob.get_battle("battle-missing")
        assert (missing.value.status, missing.value.code) == (404, "battle_not_found")


def test_the_async_client_battles_as_the_sync_one(arena_platform: ArenaPlatform) -> None:
    token = token_of(arena_platform, "client-carol")

    async def battle() -> tuple[list[BattleEvent], str]:
        async with AsyncClient(arena_platform.gateway.url, token, timeout=120) as client:
            events = [event async for event in client.battle(COUNT, max_tokens=TOKENS)]
            assert events[0].id is not None
            voted = await client.vote(events[0].id, "both_bad")
            board = await client.leaderboard(bootstrap=0)
            assert board.bootstrap_rounds == 0
            return events, voted.vote

    events, vote = asyncio.run(battle())
    typed = by_type(events)
    assert {event.side for event in typed["delta"]} == {"a", "b"}
    assert len(typed["done"]) == 2 and len(typed["turn"]) == 1 and vote == "both_bad"


def test_the_cli_battles_votes_and_prints_the_leaderboard(
    arena_platform: ArenaPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--url", arena_platform.gateway.url, "--token", token_of(arena_platform, "client-dan")]
    assert main([*where, "arena", "battle", "Count from 1 to 5.", "--max-tokens", "8"]) == 0
    out, err = capsys.readouterr()
    turn = json.loads(out)
    assert turn["turn"] == 1 and set(turn["answers"]) == {"a", "b"}
    assert "A └ " in err and "B └ " in err
    assert f"modelserve arena vote {turn['id']} a|b|tie|both_bad" in err

    assert main([*where, "arena", "vote", turn["id"], "b"]) == 0
    voted = json.loads(capsys.readouterr().out)
    assert {voted["models"]["a"], voted["models"]["b"]} == set(arena_platform.models)

    assert main([*where, "arena", "leaderboard", "--bootstrap", "10"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["object"] == "arena.leaderboard" and board["scope"] == "global"
    assert board["votes"] + sum(board["excluded"].values()) >= 1
    with client_of(arena_platform, "client-dan") as dan:  # the resampling is seeded
        assert board == dan.leaderboard(bootstrap=10).model_dump(mode="json")

    assert main([*where, "arena", "leaderboard", "--bootstrap", "10", "--table"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == [
        "rank",
        "model",
        "rating",
        "95%",
        "CI",
        "votes",
        "win",
        "rate",
        "elo",
    ]
    assert printed[-1].startswith("global: ")
    assert len(printed) == 2 + len(board["models"])

    assert main([*where, "arena", "vote", turn["id"], "a"]) == 1
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "already_voted"


def arena_examples() -> list[str]:
    """The Python blocks of docs/client.md's Arena section, with fewer tokens."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text()
    section = page[page.index("\n### Arena\n") : page.index("\n### Jobs\n")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert all("max_tokens=64" in block for block in blocks)
    return [block.replace("max_tokens=64", f"max_tokens={TOKENS}") for block in blocks]


def test_the_arena_examples_of_docs_client_md_run(
    arena_platform: ArenaPlatform,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = arena_examples()
    assert len(blocks) == 2
    monkeypatch.setenv("MODELSERVE_URL", arena_platform.gateway.url)
    monkeypatch.setenv("MODELSERVE_TOKEN", token_of(arena_platform, "client-erin"))
    with Client(timeout=120) as client:
        scope: dict[str, Any] = {"client": client, "AsyncClient": AsyncClient}
        for block in blocks:
            exec(compile(block, "docs/client.md", "exec"), scope)
        asyncio.run(scope["battle"]())
        assert len(client.list_battles().data) == 4
    assert " beat " in capsys.readouterr().out


def test_void_and_error_events_and_a_cut_stream() -> None:
    """Without the platform: what the gateway's stream says when a side fails, when a turn
    is not kept, and a stream cut before `[DONE]`."""
    start = {"type": "battle", "id": "battle-1", "turn": 1}
    void = {"type": "void", "id": "battle-1", "side": "b", "code": "upstream_broken"}
    lost = {"type": "error", "id": "battle-1", "code": "database_unavailable", "message": "m"}

    def stream(*events: dict[str, Any], done: bool = True) -> bytes:
        lines = [f"data: {json.dumps(event)}\n\n" for event in events]
        return ("".join(lines) + (": waiting\n\ndata: [DONE]\n\n" if done else "")).encode()

    answers = iter([stream(start, void), stream(start, lost), stream(start, done=False)])

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=next(answers))

    with Client("http://gateway.test", "t", transport=httpx.MockTransport(answer)) as client:
        events = list(client.battle(COUNT))
        assert [event.type for event in events] == ["battle", "void"]
        assert (events[1].side, events[1].code) == ("b", "upstream_broken")
        collector = TurnCollector()
        with pytest.raises(ModelServeError) as raised:
            for event in client.battle(COUNT):
                collector.add(event)
        assert raised.value.code == "database_unavailable"
        with pytest.raises(ModelServeError) as cut:
            list(client.battle(COUNT))
        assert cut.value.code == "unexpected_answer"
