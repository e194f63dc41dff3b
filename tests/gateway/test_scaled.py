"""Inference-time scaling through the gateway, end to end: the real SmolLM2 server behind
an external ModelServe, the operator, PostgreSQL, and (for budget caps) the contract
service. Where a test must know which candidate wins, or hold the model server's answer
until it has seen the gateway's keep-alive, a scripted OpenAI-shaped server on loopback
(modelserve.testbed.scripted_openai) stands behind a second external ModelServe."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.scripted_openai import Scripted, ScriptedServer
from modelserve.testbed.testing_clients import metric
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]

SECRET = "gateway-tests-secret-of-at-least-32-bytes"
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is 2 + 3? Answer with the number only."}
]
SHORT = 12  # tokens per candidate: SmolLM2 on two CPU cores
SCRIPTED = "scripted"  # the served name of the scripted server


def modelserve(name: str, url: str, served: str) -> dict[str, Any]:
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {"runtime": "external", "model": {"servedName": served}, "external": {"url": url}},
    }


@pytest.fixture(scope="module")
def model(
    crds: KubeCluster, operator: RunningOperator, cluster_namespace: str, llm: LlmServer
) -> str:
    """The served name of an external ModelServe `smollm2` for the SmolLM2 server (the
    operator's probe wants the server to list the served name: its alias)."""
    body = modelserve("smollm2", llm.url, llm.alias)
    crds.kubectl("apply", "-n", cluster_namespace, "-f", "-", stdin=yaml.safe_dump(body))

    def ready() -> bool:
        status = crds.get_json("ms", "smollm2", "-n", cluster_namespace).get("status") or {}
        return bool(status.get("phase") == "Ready")

    wait_for(ready, timeout=90, what="the SmolLM2 ModelServe to be Ready")
    return llm.alias


@pytest.fixture(scope="module")
def contract(module_contract: RunningService) -> RunningService:
    return module_contract


@pytest.fixture(scope="module")
def gateway(
    gateway_kube: str,
    database_url: str,
    testbed_dir: Path,
    model: str,
    contract: RunningService,
) -> Iterator[str]:
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "scaled-tests-admin-password",
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_CONTRACT_URL": contract.url,
        "GATEWAY_SCALING_KEEPALIVE_SECONDS": "0.2",
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_scaled"
    ) as service:
        # Routed once the watch has both servers Ready.
        headers = {"Authorization": f"Bearer {token('alice')}"}

        def routed() -> bool:
            body = {"model": model, "messages": QUESTION, "max_tokens": 1, "budget": 1}
            answer = httpx.post(
                f"{service.url}/v1/chat/completions", json=body, headers=headers, timeout=60
            )
            return answer.status_code == 200

        wait_for(routed, timeout=30, what="the gateway to route the scaled servers")
        yield service.url


@pytest.fixture(scope="module")
def scripted(
    crds: KubeCluster, operator: RunningOperator, cluster_namespace: str, gateway: str
) -> Iterator[ScriptedServer]:
    """The scripted server behind an external ModelServe, routed by the gateway; each test
    sets its `script` (and `gate`) first."""
    with ScriptedServer(SCRIPTED, [Scripted("ready")]) as server:
        body = modelserve("scripted", server.url, SCRIPTED)
        crds.kubectl("apply", "-n", cluster_namespace, "-f", "-", stdin=yaml.safe_dump(body))

        def routed() -> bool:
            answer = scaled(gateway, {"model": SCRIPTED, "budget": 1})
            return bool(answer.status_code == 200)

        wait_for(routed, timeout=90, what="the gateway to route the scripted server")
        yield server


def chosen_text(trace: dict[str, Any]) -> str:
    text: str = trace["candidates"][trace["selected"]]["text"]
    return text


def first_best(scores: list[float]) -> int:
    """The candidate best-of-N and the step-wise algorithms must pick: the first of the
    highest scores."""
    return scores.index(max(scores))


def majority_index(answers: list[str | None]) -> int:
    """The candidate self-consistency must pick: the first with the most frequent answer
    (the first candidate when none gave an answer)."""
    given = [answer for answer in answers if answer is not None]
    if not given:
        return 0
    counts = {answer: given.count(answer) for answer in given}
    return answers.index(max(counts, key=lambda answer: counts[answer]))


def token(subject: str, roles: tuple[str, ...] = ()) -> str:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    # alice owns the server; dora shares it through team nlp.
    teams = ("nlp",) if subject in ("alice", "dora") else ()
    return signer.sign(subject, roles=roles, teams=teams)


def client(gateway: str, subject: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway}/v1", api_key=token(subject), max_retries=0, timeout=120
    )


def scaled(gateway: str, body: dict[str, Any], subject: str = "alice", **headers: str) -> Any:
    return httpx.post(
        f"{gateway}/v1/chat/completions",
        json={"messages": QUESTION, "max_tokens": SHORT, **body},
        headers={"Authorization": f"Bearer {token(subject)}", **headers},
        timeout=120,
    )


def test_self_consistency_with_the_openai_client(gateway: str, model: str) -> None:
    before = metric(gateway, "modelserve_gateway_scaling_upstream_calls_total", model=model)
    chat = client(gateway).chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=SHORT,
        temperature=0.8,
        extra_body={"budget": 3, "algorithm": "self-consistency", "scaling_trace": True},
    )
    assert chat.choices[0].message.content
    trace = (chat.model_extra or {})["scaling"]
    assert trace["algorithm"] == "self-consistency"
    assert trace["budget"] == 3
    assert len(trace["candidates"]) == 3
    assert 0 <= trace["selected"] < 3
    answers = [candidate["answer"] for candidate in trace["candidates"]]
    assert trace["selected"] == majority_index(answers)
    assert chat.choices[0].message.content == chosen_text(trace)
    # llama.cpp ignores n: three requests, their usage summed.
    assert trace["upstream_calls"] == 3
    assert chat.usage is not None and chat.usage.completion_tokens >= 3
    # Counted once the answer is sent, which the client may read first.
    wait_for(
        lambda: (
            metric(gateway, "modelserve_gateway_scaling_upstream_calls_total", model=model)
            == before + 3
        ),
        timeout=10,
        what="the three calls to be counted",
    )


@pytest.mark.parametrize("reward", ["logprob", "judge"])
def test_best_of_n_with_a_reward(
    gateway: str, model: str, admin_configures: Any, reward: str
) -> None:
    admin_configures({"model": model, "reward": reward})
    answer = scaled(
        gateway,
        {"model": model, "temperature": 0.9},
        **{"X-ModelServe-Budget": "3", "X-ModelServe-Algorithm": "best-of-n"},
        **{"X-ModelServe-Trace": "1"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    trace = body["scaling"]
    assert trace["algorithm"] == "best-of-n"
    assert trace["reward"] == reward
    scores = [candidate["score"] for candidate in trace["candidates"]]
    assert len(scores) == 3 and all(isinstance(score, float) for score in scores)
    assert trace["selected"] == first_best(scores)
    assert body["choices"][0]["message"]["content"] == chosen_text(trace)
    if reward == "judge":
        # SmolLM2 judged each distinct answer: more calls than the three candidates.
        assert trace["upstream_calls"] > 3
        assert all(0 <= score <= 1 for score in scores)
    else:
        assert all(score <= 0 for score in scores)  # mean log-probabilities
    assert body["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("algorithm", ["particle-filtering", "beam-search"])
def test_stepwise_algorithms_run_against_smollm2(gateway: str, model: str, algorithm: str) -> None:
    answer = scaled(
        gateway,
        {"model": model, "budget": 4, "algorithm": algorithm, "scaling_trace": True},
    )
    assert answer.status_code == 200, answer.text
    trace = answer.json()["scaling"]
    assert trace["algorithm"] == algorithm
    assert trace["rounds"] >= 1
    assert trace["candidates"]
    scores = [candidate["score"] for candidate in trace["candidates"]]
    assert trace["selected"] == first_best(scores)
    assert answer.json()["choices"][0]["message"]["content"] == chosen_text(trace)


def test_best_of_n_answers_the_best_candidate_not_the_first(
    gateway: str, scripted: ScriptedServer
) -> None:
    # Seeded 0, candidate i is script[i] whatever order the three requests arrive in.
    scripted.script = [
        Scripted("It is 4", logprob=-2.0),
        Scripted("It is 5", logprob=-0.1),
        Scripted("It is 6", logprob=-1.0),
    ]
    body = {"model": SCRIPTED, "budget": 3, "algorithm": "best-of-n", "seed": 0}
    answer = scaled(gateway, {**body, "scaling_trace": True})
    assert answer.status_code == 200, answer.text
    trace = answer.json()["scaling"]
    assert trace["reward"] == "logprob"
    assert [candidate["text"] for candidate in trace["candidates"]] == [
        "It is 4",
        "It is 5",
        "It is 6",
    ]
    assert trace["selected"] == 1
    assert answer.json()["choices"][0]["message"]["content"] == "It is 5"


def test_self_consistency_answers_the_majority_not_the_first(
    gateway: str, scripted: ScriptedServer
) -> None:
    scripted.script = [Scripted("Maybe 4"), Scripted("I say 5"), Scripted("Surely 5")]
    body = {"model": SCRIPTED, "budget": 3, "algorithm": "self-consistency", "seed": 0}
    answer = scaled(gateway, {**body, "scaling_trace": True})
    assert answer.status_code == 200, answer.text
    trace = answer.json()["scaling"]
    assert [candidate["answer"] for candidate in trace["candidates"]] == ["4", "5", "5"]
    assert trace["selected"] == 1
    assert answer.json()["choices"][0]["message"]["content"] == "I say 5"


def test_a_models_defaults_apply_and_budget_one_passes_through(
    gateway: str, model: str, admin_configures: Any
) -> None:
    admin_configures({"model": model, "alg": "self-consistency", "budget": 3})

    def defaulted() -> Any:
        answer = scaled(gateway, {"model": model}, **{"X-ModelServe-Trace": "1"})
        return answer if "scaling" in answer.json() else None

    trace = wait_for(defaulted, timeout=30, what="the model's defaults").json()["scaling"]
    assert trace["algorithm"] == "self-consistency"
    assert trace["budget"] == 3
    for body in ({"budget": 1}, {"algorithm": "none"}):
        plain = scaled(gateway, {"model": model, "scaling_trace": True, **body})
        assert plain.status_code == 200
        assert "scaling" not in plain.json()  # the model server's own answer


def test_streamed_scaling_sends_keepalives_then_the_answer(
    gateway: str, model: str, scripted: ScriptedServer
) -> None:
    scripted.script = [Scripted("Maybe 4"), Scripted("I say 5"), Scripted("Surely 5")]
    body = {
        "model": SCRIPTED,
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
        "budget": 3,
        "algorithm": "self-consistency",
        "seed": 0,
        "scaling_trace": True,
    }
    headers = {"Authorization": f"Bearer {token('alice')}"}
    # The scripted server holds every candidate until the test has read a keep-alive
    # through the gateway: a gateway that buffered the stream could send none before the
    # candidates, which then fail (503, after the gate's bound) and the answer never comes.
    scripted.gate = threading.Event()
    try:
        with httpx.stream(
            "POST", f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=120
        ) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            lines = answer.iter_lines()
            first = next(line for line in lines if line)
            assert first.startswith(":")  # a keep-alive comment, while candidates are held
            scripted.gate.set()
            rest = [line for line in lines if line]
    finally:
        scripted.gate.set()
        scripted.gate = None
    events = [line.removeprefix("data: ") for line in rest if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(
        chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"]
    )
    trace = next(chunk["scaling"] for chunk in chunks if "scaling" in chunk)
    assert trace["selected"] == 1
    assert text == chosen_text(trace) == "I say 5"
    assert chunks[-1]["usage"]["completion_tokens"] == 2 + 3 + 2  # one token a word

    # And with the official client: the chosen answer arrives as chat.completion.chunk.
    stream: openai.Stream[ChatCompletionChunk] = client(gateway).chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=SHORT,
        stream=True,
        extra_body={"budget": 2, "algorithm": "best-of-n"},
    )
    pieces = [part.choices[0].delta.content or "" for part in stream if part.choices]
    assert "".join(pieces)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"budget": 0}, {}),
        ({"budget": "many"}, {}),
        ({"budget": "8"}, {}),
        ({"budget": 5000}, {}),
        ({"budget": True}, {}),
        ({"algorithm": "monte-carlo"}, {}),
        ({}, {"X-ModelServe-Budget": "-1"}),
        ({}, {"X-ModelServe-Algorithm": "nope"}),
    ],
)
def test_bad_scaling_fields_are_openai_400s(
    gateway: str, model: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    answer = scaled(gateway, {"model": model, **body}, **headers)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_scaling"
    assert error["type"] == "invalid_request_error"


def test_the_contract_caps_the_budget(gateway: str, model: str, contract: RunningService) -> None:
    capped = httpx.put(
        f"{contract.url}/contracts/user/alice",
        json={"max_budget": 2},
        headers={"Authorization": f"Bearer {token('root', ('admin',))}"},
    )
    assert capped.status_code == 200, capped.text
    # The gateway reads alice's contract again within GATEWAY_QUOTA_REFRESH_SECONDS (5 s).
    capping = {"model": model, "budget": 4, "algorithm": "self-consistency", "max_tokens": 1}
    wait_for(
        lambda: scaled(gateway, capping).status_code == 403,
        timeout=15,
        what="the new cap to reach the gateway",
    )
    ai = client(gateway)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        ai.chat.completions.create(
            model=model,
            messages=QUESTION,
            max_tokens=SHORT,
            extra_body={"budget": 4, "algorithm": "self-consistency"},
        )
    assert denied.value.code == "max_budget_exceeded"
    allowed = ai.chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=SHORT,
        extra_body={"budget": 2, "algorithm": "self-consistency"},
    )
    assert allowed.choices[0].message.content
    # The same budget through a header is capped the same way.
    headers = {"X-ModelServe-Budget": "3", "X-ModelServe-Algorithm": "best-of-n"}
    assert scaled(gateway, {"model": model}, **headers).status_code == 403


@pytest.fixture
def admin_configures(gateway: str) -> Iterator[Any]:
    """`admin_configures(body)`: POST /configure as an admin; the defaults are reset after."""
    headers = {"Authorization": f"Bearer {token('root', ('admin',))}"}
    configured: list[str] = []

    def configure(body: dict[str, Any]) -> dict[str, Any]:
        answer = httpx.post(f"{gateway}/configure", json=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        configured.append(body["model"])
        wanted = answer.json()["scaling"]

        def applied() -> bool:  # the watch brings the change to the route table
            probe = scaled(gateway, {"model": body["model"], "budget": 1})
            return probe.status_code == 200 and bool(wanted)

        wait_for(applied, timeout=30, what="the new defaults")
        result: dict[str, Any] = answer.json()
        return result

    yield configure
    for model in configured:
        httpx.post(
            f"{gateway}/configure",
            json={"model": model, "alg": "none", "budget": 1, "reward": "logprob"},
            headers=headers,
            timeout=30,
        )


def test_configure_is_for_admins_and_sets_the_modelserve(
    gateway: str, model: str, crds: KubeCluster, cluster_namespace: str, admin_configures: Any
) -> None:
    configured = admin_configures(
        {
            "model": model,
            "alg": "best-of-n",
            "budget": 2,
            "rm_agg_method": "mean",
            "endpoint": "http://ignored:8100/v1",
            "rm_device": "cuda:1",
        }
    )
    assert configured["status"] == "success"
    spec = crds.get_json("ms", "smollm2", "-n", cluster_namespace)["spec"]["scaling"]
    assert spec["algorithm"] == "best-of-n"
    assert spec["budget"] == 2
    assert spec["rewardAggregation"] == "mean"
    user = {"Authorization": f"Bearer {token('alice')}"}
    admin = {"Authorization": f"Bearer {token('root', ('admin',))}"}
    assert (
        httpx.post(f"{gateway}/configure", json={"model": model}, headers=user).status_code == 403
    )
    unknown = httpx.post(f"{gateway}/configure", json={"model": "nothing"}, headers=admin)
    assert unknown.status_code == 404
    for wrong in ({"rm_agg_method": "median"}, {"budget": 0}, {"alg": "bogus"}, {"x": 1}):
        bad = httpx.post(f"{gateway}/configure", json={"model": model, **wrong}, headers=admin)
        assert bad.status_code == 400, (wrong, bad.text)
        assert bad.json()["error"]["code"] == "bad_request", bad.text

    def defaulted() -> bool:
        answer = scaled(gateway, {"model": model, "scaling_trace": True})
        return bool(
            answer.status_code == 200
            and answer.json().get("scaling", {}).get("algorithm") == "best-of-n"
        )

    wait_for(defaulted, timeout=30, what="requests to follow the configured defaults")


def test_an_abandoned_request_gives_its_reserved_tokens_back(
    gateway: str, model: str, contract: RunningService
) -> None:
    budget = httpx.put(
        f"{contract.url}/contracts/user/dora",
        json={"token_budget": 100},
        headers={"Authorization": f"Bearer {token('root', ('admin',))}"},
    )
    assert budget.status_code == 200, budget.text
    body = {"model": model, "budget": 2, "algorithm": "self-consistency", "max_tokens": 40}
    # 2 x 40 tokens are held while it runs; the client leaves as soon as the answer's head
    # (sent at once, keep-alives follow while candidates are generated) says it began.
    with httpx.stream(
        "POST",
        f"{gateway}/v1/chat/completions",
        json={"messages": QUESTION, **body, "stream": True},
        headers={"Authorization": f"Bearer {token('dora')}"},
        timeout=30,
    ) as begun:
        assert begun.status_code == 200

    # Held until the contract expired it (minutes), a second request would be over the
    # budget of 100; given back at once, it fits.
    def fits() -> bool:
        return bool(scaled(gateway, body, "dora").status_code == 200)

    wait_for(fits, timeout=30, what="the abandoned request's tokens to be given back")


def test_a_bad_answer_pattern_fails_only_scaled_requests(
    gateway: str, model: str, admin_configures: Any, crds: KubeCluster, cluster_namespace: str
) -> None:
    # /configure refuses a bad pattern; kubectl does not (the CRD takes any string).
    patch = json.dumps({"spec": {"scaling": {"answerPattern": "(unclosed"}}})
    crds.kubectl("patch", "ms", "smollm2", "-n", cluster_namespace, "--type=merge", "-p", patch)
    try:

        def broken() -> Any:
            answer = scaled(gateway, {"model": model, "budget": 2, "algorithm": "self-consistency"})
            return answer if answer.status_code == 500 else None

        assert wait_for(broken, timeout=30, what="the bad pattern").json()["error"]["code"] == (
            "bad_model_config"
        )
        assert scaled(gateway, {"model": model}).status_code == 200
    finally:
        undo = json.dumps({"spec": {"scaling": {"answerPattern": None}}})
        crds.kubectl("patch", "ms", "smollm2", "-n", cluster_namespace, "--type=merge", "-p", undo)
