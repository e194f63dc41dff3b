"""Unit tests of the arena's parts: what gives a model away, how pairs are drawn, which
board a battle feeds, and how a side's events are read from the proxy's response."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import random
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from modelserve.common.errors import ApiError
from modelserve.common.modelserve import Algorithm, RewardKind, Scaling
from modelserve.common.tokens import Claims
from modelserve.gateway.arena.lanes import Kind, Lane, LaneEvent
from modelserve.gateway.arena.pairing import draw_pair, reward_models, scope_of
from modelserve.gateway.arena.reveals import identity_terms, revealed
from modelserve.gateway.arena.store import Scope as Board
from modelserve.gateway.arena.turns import Turn, TurnResponse
from modelserve.gateway.asgi import ExchangeResponse
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.routing import Target

# --- What gives a model away -------------------------------------------------------------


def test_a_served_name_gives_away_its_family_and_maker() -> None:
    assert identity_terms("Meta-Llama-3.1-8B-Instruct")[1:] == ["Llama", "Meta"]
    assert {"SmolLM", "Hugging Face"} <= set(identity_terms("smollm2-135m-instruct"))
    assert identity_terms("acme-helper") == ["acme-helper"]


def test_an_answer_that_names_either_model_is_found() -> None:
    answers = {
        "a": ["I am SmolLM2, trained by Hugging Face."],
        "b": ["Llamas live in the Andes; see the metadata."],
    }
    found = revealed(answers, ["smollm2-135m-instruct", "meta-llama-3-8b"])
    assert {"side": "a", "term": "SmolLM"} in found
    assert {"side": "a", "term": "Hugging Face"} in found
    # "Llamas" is another word, "metadata" is not "Meta".
    assert [f for f in found if f["side"] == "b"] == []
    assert revealed({"a": ["Philosophy is hard."]}, ["phi-3-mini"]) == []
    assert revealed({"b": ["As Phi-3, I can help."]}, ["phi-3-mini"]) == [
        {"side": "b", "term": "Phi"}
    ]


# --- Pairs and boards ----------------------------------------------------------------------


def test_pairs_are_two_models_in_random_order_weighted_toward_few_votes() -> None:
    rng = random.Random(7)
    votes = {"veteran": 10_000}
    seen: collections.Counter[str] = collections.Counter()
    firsts: collections.Counter[str] = collections.Counter()
    for _ in range(3000):
        pair = draw_pair(["veteran", "new-1", "new-2"], votes, rng)
        assert len(set(pair)) == 2
        seen.update(pair)
        firsts[pair[0]] += 1
    # 1/sqrt(10001) against 1: the veteran is drawn in few pairs, the new ones in nearly all.
    assert seen["veteran"] < 200 < 2800 < seen["new-1"]
    assert firsts["new-1"] > 1000 and firsts["new-2"] > 1000  # either side
    with pytest.raises(ValueError):
        draw_pair(["alone", "alone"], {}, rng)


def _claims(sub: str, teams: list[str]) -> Claims:
    return Claims(sub=sub, teams=teams, iss="i", aud="a", exp=0, iat=0, jti="j")


def _target(name: str, *, platform: bool = False, team: str | None = None) -> Target:
    return Target(
        server_id=name,
        namespace="ns",
        name=name,
        served_name=name,
        endpoint="",
        ready=True,
        phase="Ready",
        message="",
        owner="someone",
        team=team,
        platform=platform,
    )


def test_process_reward_models_are_not_drawn() -> None:
    scored = dataclasses.replace(
        _target("policy", platform=True),
        scaling=Scaling(algorithm=Algorithm.BEST_OF_N, budget=4, reward_model="prm"),
    )
    judged = dataclasses.replace(
        _target("judged", platform=True),
        scaling=Scaling(
            algorithm=Algorithm.BEST_OF_N, budget=4, reward_model="judge", reward=RewardKind.JUDGE
        ),
    )
    # A tenant's server may name any model as its reward model: that removes none.
    tenants = dataclasses.replace(
        _target("theirs"), scaling=Scaling(algorithm=Algorithm.BEST_OF_N, reward_model="chat")
    )
    assert reward_models([scored, judged, tenants, _target("plain")]) == {"prm"}


def test_the_board_of_a_battle_follows_its_models() -> None:
    alice = _claims("alice", ["nlp"])
    platform, ours = _target("p", platform=True), _target("t", team="nlp")
    assert scope_of([platform, _target("q", platform=True)], alice) == (Board.GLOBAL, None)
    assert scope_of([platform, ours], alice) == (Board.TEAM, "nlp")
    assert scope_of([ours, _target("u", team="nlp")], alice) == (Board.TEAM, "nlp")
    assert scope_of([platform, _target("own")], alice) == (Board.PRIVATE, None)
    assert scope_of([ours, _target("v", team="vision")], alice) == (Board.PRIVATE, None)


# --- A side's events -----------------------------------------------------------------------


class Scripted(ExchangeResponse):
    """A response that sends `messages` as they are (what the proxy would)."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        super().__init__()
        self.messages = messages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for message in self.messages:
            await send(message)

    def abandon(self) -> None:
        pass


def _head(status: int, content_type: bytes) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"Content-Type", content_type)],
    }


def _body(data: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": True}


def _chunk(content: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    return b"data: " + json.dumps({"model": "secret-name", "choices": [choice]}).encode() + b"\n\n"


def _run(messages: list[dict[str, Any]]) -> tuple[Lane, list[LaneEvent]]:
    async def scenario() -> tuple[Lane, list[LaneEvent]]:
        events: asyncio.Queue[LaneEvent] = asyncio.Queue()
        lane = Lane("a", Scripted(messages), events, asyncio.Event())
        await lane.run()
        found = []
        while not events.empty():
            found.append(events.get_nowait())
        return lane, found

    return asyncio.run(scenario())


def test_a_stream_is_read_across_pieces_without_the_model_name() -> None:
    stream = (
        b": the model is loading\n\n" + _chunk("Hel") + _chunk("lo", "stop") + b"data: [DONE]\n\n"
    )
    pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    lane, events = _run([_head(200, b"text/event-stream"), *map(_body, pieces)])
    assert [e.kind for e in events] == [Kind.LOADING, Kind.DELTA, Kind.DELTA, Kind.DONE]
    assert lane.text == "Hello" and events[-1].finish_reason == "stop"
    assert all("secret" not in e.content for e in events)


def test_failures_of_a_side_are_told_by_code_and_status() -> None:
    error = {"error": {"message": "the model server ns/x failed", "code": "upstream_broken"}}
    broken = [
        _head(200, b"text/event-stream"),
        _body(_chunk("One")),
        _body(b"data: " + json.dumps(error).encode() + b"\n\n"),
    ]
    _, events = _run(broken)
    assert (events[-1].kind, events[-1].code, events[-1].status) == (
        Kind.FAILED,
        "upstream_broken",
        502,
    )

    refused = {"error": {"message": "rate", "code": "request_rate_exceeded"}}
    _, events = _run([_head(429, b"application/json"), _body(json.dumps(refused).encode())])
    assert (events[-1].kind, events[-1].code, events[-1].status) == (
        Kind.FAILED,
        "request_rate_exceeded",
        429,
    )

    _, events = _run([_head(200, b"text/event-stream"), _body(_chunk("cut sho"))])
    assert (events[-1].kind, events[-1].code) == (Kind.FAILED, "answer_incomplete")

    _, events = _run([_head(200, b"text/event-stream"), _body(b"data: {not json\n\n")])
    assert (events[-1].kind, events[-1].code) == (Kind.FAILED, "malformed_answer")


def test_a_whole_answer_counts_as_one_piece() -> None:
    answer = {"choices": [{"message": {"content": "Hi there"}, "finish_reason": "length"}]}
    lane, events = _run([_head(200, b"application/json"), _body(json.dumps(answer).encode())])
    assert [e.kind for e in events] == [Kind.DELTA, Kind.DONE]
    assert lane.text == "Hi there" and events[-1].finish_reason == "length"


# --- A turn whose answers cannot be kept -----------------------------------------------


class DownStore:
    """The arena's store with its database gone (the one call a finished turn makes)."""

    async def finish_turn(self, *_: Any) -> None:
        raise ApiError(503, "database_unavailable", "the arena's database is unavailable")


def test_a_turn_the_database_cannot_keep_says_so_instead_of_offering_a_vote() -> None:
    answered = [_head(200, b"text/event-stream"), _body(_chunk("Hi", "stop") + b"data: [DONE]\n\n")]
    turn = Turn(
        "battle-1",
        2,
        "claim-1",
        {"a": Scripted(answered), "b": Scripted(answered)},
        {"a": [], "b": []},
        stream=True,
        seconds=60,
    )
    response = TurnResponse(DownStore(), GatewayMetrics(), turn)  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays
        return {}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(response({"type": "http"}, receive, send))  # type: ignore[arg-type]
    raw = b"".join(m.get("body", b"") for m in sent).decode()
    events = [line.removeprefix("data: ") for line in raw.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-2])["type"] == "error"
    assert json.loads(events[-2])["code"] == "database_unavailable"
    assert events[-1] == "[DONE]"
    assert not any(e.startswith("{") and json.loads(e)["type"] == "turn" for e in events)


def test_a_later_turn_asks_the_same_adapter_of_the_same_server() -> None:
    """A side drawn as a LoRA adapter of a server answers every turn as that adapter (the
    battle keeps the server's id and the model's name); an adapter gone voids it."""
    from types import SimpleNamespace

    from modelserve.gateway.arena.battles import Arena
    from modelserve.gateway.balancing import Endpoint
    from modelserve.gateway.endpoints import ServiceSlice
    from modelserve.gateway.routing import RouteTable, target_from_body

    body = {
        "metadata": {"name": "qwen", "namespace": "modelserve", "uid": "uid-qwen", "labels": {}},
        "spec": {
            "runtime": "llamacpp",
            "model": {"uri": "s3://b/models/m/m.gguf", "servedName": "qwen-base"},
            "adapters": [{"name": "sql-lora", "uri": "s3://b/models/l/l.gguf"}],
        },
        "status": {"phase": "Ready"},
    }
    table = RouteTable(platform_namespaces=("modelserve",))
    table.replace([target_from_body(body)])
    endpoint = Endpoint("http://127.0.0.1:9/v1", pod="qwen-0")  # never dialled
    table.endpoints.upsert(ServiceSlice("modelserve", "qwen-abcde", "qwen", (endpoint,)))
    table.synced = True
    voided: list[str] = []

    async def void(battle_id: str, claim: str, reason: str) -> None:
        voided.append(reason)

    arena = Arena(SimpleNamespace(void=void), SimpleNamespace(table=table), None, None)  # type: ignore[arg-type]
    battle = SimpleNamespace(id="battle-1", anonymous=True)
    claims = Claims(sub="ann", teams=[], roles=[], iss="m", aud="m", exp=2**40, iat=0, jti="t")

    async def scenario() -> None:
        side = await arena._server(battle, "c", "uid-qwen", "sql-lora", claims)  # type: ignore[arg-type]
        assert (side.served_name, side.base_name) == ("sql-lora", "qwen-base")
        assert side.adapter is not None and side.adapter.name == "sql-lora"
        base = await arena._server(battle, "c", "uid-qwen", "qwen-base", claims)  # type: ignore[arg-type]
        assert (base.served_name, base.adapter) == ("qwen-base", None)
        with pytest.raises(ApiError) as gone:
            await arena._server(battle, "c", "uid-qwen", "poet-lora", claims)  # type: ignore[arg-type]
        assert gone.value.code == "battle_void" and voided

    asyncio.run(scenario())
