"""The arena through the gateway as a process, against real models: SmolLM2 under two
names (one with best-of-2 by default) in a platform namespace, and two small OpenAI
servers of this test on loopback (behind `external` ModelServes of single users): one
that breaks its stream half-way, one that names itself in every answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from aiohttp import web

from modelserve.testbed.arena_platform import ArenaPlatform
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import build_external_server, serve_external
from modelserve.testbed.polling import wait_for
from modelserve.testbed.threaded_http import ThreadedApp

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]

COUNT = [{"role": "user", "content": "Count from 1 to 5."}]
FLAKY, NAMED, PICKY = "arena-flaky", "llama-mini", "arena-picky"


class ScriptedServer(ThreadedApp):
    """An OpenAI server on loopback that serves `model` and streams `pieces` as its
    answer; with `breaks`, it cuts the connection after the first piece; with `refuses`,
    it answers 400 to a conversation of more messages than that. It counts requests."""

    def __init__(
        self, model: str, pieces: list[str], *, breaks: bool = False, refuses: int | None = None
    ) -> None:
        super().__init__()
        self.model, self.pieces, self.breaks, self.refuses = model, pieces, breaks, refuses
        self.requests = 0

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model}]})

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [choice]}
        return b"data: " + json.dumps({**body, "model": self.model}).encode() + b"\n\n"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.json()
        if self.refuses is not None and len(body["messages"]) > self.refuses:
            error = {"message": "the prompt is too long", "code": "context_length_exceeded"}
            return web.json_response({"error": error}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(self._chunk({"role": "assistant"}))
        for piece in self.pieces:
            await response.write(self._chunk({"content": piece}))
            if self.breaks:
                assert request.transport is not None
                request.transport.close()  # no end of the stream, no [DONE]
                return response
        await response.write(self._chunk({}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@pytest.fixture(scope="module")
def own_servers(arena_platform: ArenaPlatform, crds: KubeCluster) -> Iterator[None]:
    """carol's servers: one that breaks, one that takes one turn only; dave's, that names
    itself."""
    with (
        ScriptedServer(FLAKY, ["One, two"], breaks=True) as flaky,
        ScriptedServer(PICKY, ["One, two."], refuses=1) as picky,
        ScriptedServer(NAMED, ["I am Llama, ", "a model made by Meta."]) as named,
    ):
        for name, owner, server in (
            ("flaky", "carol", flaky),
            ("picky", "carol", picky),
            ("named", "dave", named),
        ):
            serve_external(
                crds,
                build_external_server(
                    name,
                    arena_platform.users_namespace,
                    owner=owner,
                    served_name=server.model,
                    url=server.url,
                ),
            )
        yield


def read_events(response: httpx.Response) -> tuple[list[Any], bytes]:
    """The events of an arena stream (JSON objects, and "[DONE]"), and its raw bytes."""
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"].startswith("text/event-stream")
    raw = response.read()
    events: list[Any] = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events, raw


def battle(client: httpx.Client, body: dict[str, Any]) -> tuple[list[Any], bytes]:
    with client.stream("POST", "/arena/battles", json=body) as response:
        return read_events(response)


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def standing(board: dict[str, Any], model: str) -> dict[str, Any]:
    found = [row for row in board["models"] if row["model"] == model]
    return found[0] if found else {"votes": 0, "wins": 0, "losses": 0, "elo": 1000.0}


def test_a_battle_streams_both_answers_anonymously_and_a_vote_reveals_them(
    arena_platform: ArenaPlatform,
) -> None:
    models = arena_platform.models
    with arena_platform.user("alice") as alice:
        before = alice.get("/arena/leaderboard").json()
        events, raw = battle(alice, {"messages": COUNT, "max_tokens": 24, "temperature": 0})

        assert events[0]["type"] == "battle" and events[0]["turn"] == 1
        battle_id = events[0]["id"]
        for side in ("a", "b"):
            text = "".join(
                e["content"] for e in events[:-1] if e["type"] == "delta" and e["side"] == side
            )
            assert text.strip(), f"side {side} answered nothing"
            assert any(e["type"] == "done" and e["side"] == side for e in events[:-1])
        assert events[-2] == {
            "type": "turn",
            "id": battle_id,
            "turn": 1,
            "vote": f"/arena/battles/{battle_id}/vote",
        }
        assert events[-1] == "[DONE]"
        # Neither model is named anywhere before the vote: only two models were usable.
        for model in models:
            assert model.encode() not in raw
        seen = alice.get(f"/arena/battles/{battle_id}").json()
        assert seen["models"] is None and seen["status"] == "open" and seen["anonymous"]
        assert seen["scope"] is None  # which board would tell whose models they are
        assert [m["role"] for m in seen["conversations"]["a"]] == ["user", "assistant"]

        voted = alice.post(f"/arena/battles/{battle_id}/vote", json={"vote": "a"})
        assert voted.status_code == 201, voted.text
        vote = voted.json()
        assert sorted(vote["models"].values()) == sorted(models)
        assert vote["counts"] is True and vote["excluded_because"] is None
        assert vote["scope"] == "global" and vote["voter"] == "alice"
        revealed = alice.get(f"/arena/battles/{battle_id}").json()
        assert revealed["models"] == vote["models"] and revealed["scope"] == "global"

        after = alice.get("/arena/leaderboard").json()
    winner, loser = vote["models"]["a"], vote["models"]["b"]
    assert after["votes"] == before["votes"] + 1
    assert standing(after, winner)["wins"] == standing(before, winner)["wins"] + 1
    assert standing(after, loser)["losses"] == standing(before, loser)["losses"] + 1
    assert standing(after, winner)["elo"] > standing(before, winner)["elo"]
    for row in after["models"]:
        assert row["ci"]["lower"] <= row["ci"]["upper"]
        assert row["rank"] >= 1


def test_a_battle_goes_on_with_the_same_pair(arena_platform: ArenaPlatform) -> None:
    with arena_platform.user("bob") as bob:
        first = bob.post(
            "/arena/battles", json={"messages": COUNT, "max_tokens": 16, "stream": False}
        )
        assert first.status_code == 200, first.text
        battle_id = first.json()["id"]
        assert set(first.json()["answers"]) == {"a", "b"}
        second = bob.post(
            f"/arena/battles/{battle_id}/turns",
            json={
                "messages": [{"role": "user", "content": "Now backwards."}],
                "max_tokens": 16,
                "stream": False,
            },
        )
        assert second.status_code == 200, second.text
        assert second.json()["turn"] == 2
        seen = bob.get(f"/arena/battles/{battle_id}").json()
        assert seen["turns"] == 2
        for side in ("a", "b"):
            conversation = seen["conversations"][side]
            assert [m["role"] for m in conversation] == ["user", "assistant"] * 2
            assert conversation[2]["content"] == "Now backwards."
            assert conversation[3]["content"] == second.json()["answers"][side]["content"]
        voted = bob.post(f"/arena/battles/{battle_id}/vote", json={"vote": "both_bad"})
        assert voted.status_code == 201, voted.text
        listed = bob.get("/arena/battles").json()
        assert [b["id"] for b in listed["data"]] == [battle_id]
        assert listed["data"][0]["status"] == "voted"


def test_later_turns_go_to_the_first_turns_servers(
    arena_platform: ArenaPlatform, crds: KubeCluster
) -> None:
    """judy serves a model under a platform model's name once her battle started: her
    requests for that name now go to hers, her battle's turns still to the platform's."""
    models = arena_platform.models
    with arena_platform.user("judy") as judy:
        events, _ = battle(judy, {"messages": COUNT, "max_tokens": 8})
        battle_id = events[0]["id"]
        with ScriptedServer(models[0], ["judy's copy"]) as copy:
            server = build_external_server(
                "judys-copy",
                arena_platform.users_namespace,
                owner="judy",
                served_name=models[0],
                url=copy.url,
            )
            serve_external(crds, server)
            try:
                chat = {"model": models[0], "messages": COUNT, "max_tokens": 1}

                def hers() -> bool:  # once the gateway has seen her server
                    return judy.post("/v1/chat/completions", json=chat).status_code == 200 and (
                        copy.requests > 0
                    )

                wait_for(hers, timeout=60, what="judy's requests to reach her copy")
                asked = copy.requests
                turn = judy.post(
                    f"/arena/battles/{battle_id}/turns",
                    json={"messages": COUNT, "max_tokens": 8, "stream": False},
                )
                assert turn.status_code == 200, turn.text
                answers = turn.json()["answers"]
                assert "judy's copy" not in (answers["a"]["content"], answers["b"]["content"])
                assert copy.requests == asked
            finally:
                crds.kubectl("delete", "ms", "judys-copy", "-n", arena_platform.users_namespace)
        vote = judy.post(f"/arena/battles/{battle_id}/vote", json={"vote": "a"}).json()
    assert sorted(vote["models"].values()) == sorted(models)


def test_named_models_are_compared_but_their_vote_does_not_count(
    arena_platform: ArenaPlatform,
) -> None:
    models = list(arena_platform.models)
    with arena_platform.user("erin") as erin:
        events, _ = battle(erin, {"messages": COUNT, "max_tokens": 8, "models": models})
        battle_id = events[0]["id"]
        assert events[-2]["type"] == "turn"
        vote = erin.post(f"/arena/battles/{battle_id}/vote", json={"vote": "tie"}).json()
        assert vote["models"] == {"a": models[0], "b": models[1]}
        assert vote["counts"] is False and vote["excluded_because"] == "models_chosen"
        excluded = erin.get("/arena/votes", params={"counts": "false"}).json()["data"]
        assert [v["battle_id"] for v in excluded] == [battle_id]
        assert erin.get("/arena/votes", params={"counts": "true"}).json()["data"] == []
        board = erin.get("/arena/leaderboard").json()
    assert board["excluded"]["models_chosen"] >= 1


def test_a_model_that_fails_mid_battle_voids_it(
    arena_platform: ArenaPlatform, own_servers: None
) -> None:
    with arena_platform.user("carol") as carol:
        events, raw = battle(
            carol, {"messages": COUNT, "max_tokens": 8, "models": [FLAKY, arena_platform.models[0]]}
        )
        battle_id = events[0]["id"]
        void = [e for e in events if isinstance(e, dict) and e["type"] == "void"]
        assert len(void) == 1, events
        assert void[0]["side"] == "a" and void[0]["code"] == "upstream_broken"
        assert "void" in void[0]["message"]
        assert events[-1] == "[DONE]"
        assert FLAKY.encode() not in raw and b"127.0.0.1" not in raw
        seen = carol.get(f"/arena/battles/{battle_id}").json()
        assert seen["status"] == "void" and "side a" in seen["void_reason"]
        voted = carol.post(f"/arena/battles/{battle_id}/vote", json={"vote": "b"})
        assert voted.status_code == 409 and error_code(voted) == "battle_void"
        turn = carol.post(f"/arena/battles/{battle_id}/turns", json={"messages": COUNT})
        assert turn.status_code == 409 and error_code(turn) == "battle_void"


def test_a_turn_a_model_refuses_is_forgotten_and_the_battle_goes_on(
    arena_platform: ArenaPlatform, own_servers: None
) -> None:
    with arena_platform.user("carol") as carol:
        body = {"messages": COUNT, "max_tokens": 8, "models": [arena_platform.models[0], PICKY]}
        events, _ = battle(carol, body)
        battle_id = events[0]["id"]
        assert events[-2]["type"] == "turn"
        with carol.stream(
            "POST", f"/arena/battles/{battle_id}/turns", json={"messages": COUNT}
        ) as response:
            events, _ = read_events(response)
        refused = [e for e in events[:-1] if e["type"] == "error"]
        assert len(refused) == 1, events
        assert refused[0]["side"] == "b" and refused[0]["code"] == "context_length_exceeded"
        assert "forgotten" in refused[0]["message"]
        whole = carol.post(
            f"/arena/battles/{battle_id}/turns", json={"messages": COUNT, "stream": False}
        )
        assert whole.status_code == 400, whole.text
        assert whole.json()["error"]["code"] == "context_length_exceeded"
        seen = carol.get(f"/arena/battles/{battle_id}").json()
        assert seen["status"] == "open" and seen["turns"] == 1 and not seen["busy"]
        assert carol.post(f"/arena/battles/{battle_id}/vote", json={"vote": "a"}).status_code == 201


def test_an_answer_that_names_a_model_keeps_the_vote_out(
    arena_platform: ArenaPlatform, own_servers: None
) -> None:
    # dave may use two models only, so the random pair is those two.
    with arena_platform.contracts() as contracts:
        limits = {"models": [NAMED, arena_platform.models[0]]}
        assert contracts.put("/contracts/user/dave", json=limits).status_code == 200
    with arena_platform.user("dave") as dave:
        events, raw = battle(dave, {"messages": COUNT, "max_tokens": 8, "temperature": 0})
        assert NAMED.encode() not in raw
        battle_id = events[0]["id"]
        vote = dave.post(f"/arena/battles/{battle_id}/vote", json={"vote": "a"}).json()
    assert sorted(vote["models"].values()) == sorted([NAMED, arena_platform.models[0]])
    named_side = "a" if vote["models"]["a"] == NAMED else "b"
    assert vote["counts"] is False and vote["excluded_because"] == "identity_revealed"
    assert {"side": named_side, "term": "Llama"} in vote["revealed"]
    assert {"side": named_side, "term": "Meta"} in vote["revealed"]
    # dave's own model: the battle feeds no leaderboard.
    assert vote["scope"] == "private"
    # A model his contract leaves out is not his to name, as on /v1/models.
    with arena_platform.user("dave") as dave:
        other = dave.post(
            "/arena/battles", json={"messages": COUNT, "models": list(arena_platform.models)}
        )
    assert other.status_code == 404 and error_code(other) == "model_not_found"


def test_a_team_has_its_own_leaderboard(arena_platform: ArenaPlatform) -> None:
    with arena_platform.user("grace") as grace:
        own = grace.post(
            "/arena/battles", json={"messages": COUNT, "max_tokens": 4, "stream": False}
        )
        assert own.status_code == 200, own.text
    with arena_platform.user("frank", team="nlp") as frank:
        # Greedy answers to a count: no model names itself, so the vote counts.
        events, _ = battle(frank, {"messages": COUNT, "max_tokens": 8, "temperature": 0})
        battle_id = events[0]["id"]
        assert frank.post(f"/arena/battles/{battle_id}/vote", json={"vote": "b"}).status_code == 201
        board = frank.get("/arena/leaderboard", params={"team": "nlp", "bootstrap": 20})
        assert board.status_code == 200, board.text
        assert board.json()["team"] == "nlp" and board.json()["votes"] == 1, board.json()
        assert board.json()["bootstrap_rounds"] == 20
        styled = frank.get("/arena/leaderboard", params={"team": "nlp", "style_control": "true"})
        assert set(styled.json()["style_coefficients"]) == {"length", "headers", "lists", "bold"}
    with arena_platform.user("grace") as grace:
        refused = grace.get("/arena/leaderboard", params={"team": "nlp"})
        assert refused.status_code == 403 and error_code(refused) == "forbidden"
        # frank's battle as a cursor is as unknown to grace as one that never was: her
        # older battle does not follow it, which would tell her when it was made.
        for cursor in (battle_id, "0" * 32):
            page = grace.get("/arena/battles", params={"after": cursor}).json()
            assert page["data"] == [], (cursor, page)
            votes = grace.get("/arena/votes", params={"after": cursor}).json()
            assert votes["data"] == [], (cursor, votes)
        assert [b["id"] for b in grace.get("/arena/battles").json()["data"]] == [own.json()["id"]]


def test_one_voter_s_votes_count_up_to_the_daily_limit(arena_platform: ArenaPlatform) -> None:
    """GATEWAY_ARENA_COUNTED_VOTES_PER_DAY (2 on this platform): a voter's later votes of
    the day are kept, revealed and listed, but carry no board; three votes sent at once
    are judged one at a time, so two count."""
    with arena_platform.user("kim", team="ranked") as kim:
        battles = []
        for _ in range(3):
            events, _ = battle(kim, {"messages": COUNT, "max_tokens": 8, "temperature": 0})
            battles.append(events[0]["id"])

        def vote(battle_id: str) -> dict[str, Any]:
            answer = kim.post(f"/arena/battles/{battle_id}/vote", json={"vote": "a"})
            assert answer.status_code == 201, answer.text
            voted: dict[str, Any] = answer.json()
            return voted

        with ThreadPoolExecutor(3) as pool:
            votes = list(pool.map(vote, battles))
        assert sorted((v["counts"], v["excluded_because"] or "") for v in votes) == [
            (False, "daily_limit"),
            (True, ""),
            (True, ""),
        ]
        [late] = [v for v in votes if not v["counts"]]
        assert sorted(late["models"].values()) == sorted(arena_platform.models)
        excluded = kim.get("/arena/votes", params={"counts": "false"}).json()["data"]
        assert [v["battle_id"] for v in excluded] == [late["battle_id"]]
        board = kim.get("/arena/leaderboard", params={"team": "ranked", "bootstrap": 20}).json()
        assert board["votes"] == 2 and board["excluded"] == {"daily_limit": 1}
        # A board asked with fewer resamples, then the same again: the same intervals.
        fewer = kim.get("/arena/leaderboard", params={"team": "ranked", "bootstrap": 5}).json()
        assert fewer["bootstrap_rounds"] == 5 and fewer["votes"] == 2
        again = kim.get("/arena/leaderboard", params={"team": "ranked", "bootstrap": 20}).json()
        assert again == board


def test_bad_input_gets_clear_errors(arena_platform: ArenaPlatform) -> None:
    models = list(arena_platform.models)
    with arena_platform.user("heidi") as heidi, arena_platform.user("ivan") as ivan:
        events, _ = battle(heidi, {"messages": COUNT, "max_tokens": 8})
        battle_id = events[0]["id"]

        # Someone else's battle does not exist for them.
        theirs = ivan.post(f"/arena/battles/{battle_id}/vote", json={"vote": "a"})
        assert theirs.status_code == 404 and error_code(theirs) == "battle_not_found"
        assert ivan.get(f"/arena/battles/{battle_id}").status_code == 404

        assert heidi.post(f"/arena/battles/{battle_id}/vote", json={"vote": "a"}).status_code == 201
        again = heidi.post(f"/arena/battles/{battle_id}/vote", json={"vote": "b"})
        assert again.status_code == 409 and error_code(again) == "already_voted"
        closed = heidi.post(f"/arena/battles/{battle_id}/turns", json={"messages": COUNT})
        assert closed.status_code == 409 and error_code(closed) == "battle_closed"

        unknown = heidi.post(
            "/arena/battles", json={"messages": COUNT, "models": ["no-such-model", models[0]]}
        )
        assert unknown.status_code == 404 and error_code(unknown) == "model_not_found"
        bodies: list[dict[str, Any]] = [
            {"messages": COUNT, "models": [models[0], models[0]]},
            {"messages": [{"role": "assistant", "content": "Hi"}]},
            {"messages": []},
            {"messages": COUNT, "max_tokens": 0},
            {"messages": COUNT, "tools": []},
            {"messages": [{"role": "user", "content": "a\u0000b"}]},
        ]
        for body in bodies:
            refused = heidi.post("/arena/battles", json=body)
            assert refused.status_code == 422, (body, refused.text)
        long = "x" * 100_000
        too_long = heidi.post(
            "/arena/battles",
            json={
                "messages": [
                    {"role": "user", "content": long},
                    {"role": "assistant", "content": long},
                    {"role": "user", "content": "and?"},
                ]
            },
        )
        assert too_long.status_code == 422 and error_code(too_long) == "conversation_too_long"
        bad_vote = heidi.post(f"/arena/battles/{battle_id}/vote", json={"vote": "c"})
        assert bad_vote.status_code == 422
        missing = heidi.post("/arena/battles/battle-nope/vote", json={"vote": "a"})
        assert missing.status_code == 404
        others = heidi.get("/arena/votes", params={"voter": "ivan"})
        assert others.status_code == 403
    with httpx.Client(base_url=arena_platform.gateway.url) as anonymous:
        assert anonymous.post("/arena/battles", json={"messages": COUNT}).status_code == 401
