"""A completion request with a list of prompts (seed 001 sends 256 in one call), through
the gateway to real llama-cpp-python servers of SmolLM2, which take one prompt a request:
the gateway sends one request per prompt and merges the answers (choices in order with
their `index`, `echo` and `logprobs` per prompt, usage summed); the contract holds tokens
for every prompt and records the summed usage; and `rate_limit_exempt_own_servers` lets
a user past their rate limit on their own team's server, not on someone else's.

The control plane with the operator, the gateway and the contract service as processes,
on real PostgreSQL; the servers behind `external` ModelServes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from kubernetes import client as k8s

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL, Runtime
from modelserve.common.tokens import TokenSigner
from modelserve.gateway.fanout import part_headers
from modelserve.gateway.prompt_lists import fanned_out, merge_answers
from modelserve.testbed.contract_limits import put_contract
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer, start_llm
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import early_in_a_minute, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]

SHARED = "smollm2-shared"  # bob's server (team ops) for everyone: not the test users'
PROMPTS = [f"Question {index}: what is {index} plus {index}? Answer:" for index in range(16)]


@pytest.fixture(scope="module")
def shared_llm(testbed_dir: Path) -> Iterator[LlmServer]:
    server = start_llm(testbed_dir, alias=SHARED)
    yield server
    server.stop()


def _modelserve(name: str, url: str, served: str, owner: str, team: str) -> dict[str, Any]:
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: owner, TEAM_LABEL: team}},
        "spec": {"runtime": "external", "model": {"servedName": served}, "external": {"url": url}},
    }


@pytest.fixture(scope="module")
def platform_namespace(kube_api: k8s.ApiClient, cluster_namespace: str) -> Iterator[str]:
    """A platform namespace of this module: its servers are for everyone."""
    name = f"{cluster_namespace}-pf"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def server_ids(
    crds: KubeCluster,
    operator: RunningOperator,
    cluster_namespace: str,
    platform_namespace: str,
    llm: LlmServer,
    shared_llm: LlmServer,
) -> dict[str, str]:
    """alice's SmolLM2 (team nlp) and bob's (team ops, in the platform namespace, so the
    test users may use it), once Ready: name -> uid."""
    own = _modelserve("own", llm.url, llm.alias, "alice", "nlp")
    shared = _modelserve("shared", shared_llm.url, SHARED, "bob", "ops")
    crds.kubectl("apply", "-n", cluster_namespace, "-f", "-", stdin=yaml.safe_dump(own))
    crds.kubectl("apply", "-n", platform_namespace, "-f", "-", stdin=yaml.safe_dump(shared))

    def ready() -> dict[str, str] | None:
        items = [
            *crds.get_json("-n", cluster_namespace, "ms")["items"],
            *crds.get_json("-n", platform_namespace, "ms")["items"],
        ]
        found = {
            item["metadata"]["name"]: str(item["metadata"]["uid"])
            for item in items
            if (item.get("status") or {}).get("phase") == "Ready"
        }
        return found if len(found) == 2 else None

    return wait_for(ready, timeout=90, what="both SmolLM2 ModelServes to be Ready")


@pytest.fixture
def gateway(
    server_ids: dict[str, str],
    gateway_kube: str,
    platform_namespace: str,
    module_contract: RunningService,
    start_gateway: Callable[..., RunningService],
) -> RunningService:
    return start_gateway(
        GATEWAY_KUBECONFIG=gateway_kube,
        GATEWAY_PLATFORM_NAMESPACES=platform_namespace,
        GATEWAY_CONTRACT_URL=module_contract.url,
        GATEWAY_USAGE_FLUSH_SECONDS="0.2",
        GATEWAY_USAGE_RETRY_SECONDS="0.2",
    )


def _headers(signer: TokenSigner, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.sign(user, teams=['nlp'])}"}


def complete(
    gateway: RunningService,
    signer: TokenSigner,
    user: str,
    path: str = "/v1/completions",
    **body: Any,
) -> httpx.Response:
    """A completion as `user` (team nlp), once the watch routes the model."""

    def attempt() -> httpx.Response | None:
        answer = httpx.post(
            f"{gateway.url}{path}", json=body, headers=_headers(signer, user), timeout=120
        )
        unrouted = answer.status_code in (404, 503) and answer.json()["error"]["code"] in (
            "model_not_found",
            "model_not_ready",
            "server_not_found",
        )
        return None if unrouted else answer

    return wait_for(attempt, timeout=30, what="the gateway to route the model")


def _admin(signer: TokenSigner) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.sign('root', roles=['admin'])}"}


def recorded(contract: RunningService, signer: TokenSigner, user: str, requests: int) -> Any:
    """The user's usage today once `requests` requests of theirs are counted."""

    def counted() -> dict[str, Any] | None:
        answer = httpx.get(
            f"{contract.url}/usage",
            params={"user": user, "period": "day"},
            headers=_admin(signer),
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        usage: dict[str, Any] = answer.json()
        return usage if usage["requests"] >= requests else None

    return wait_for(counted, timeout=30, what=f"{requests} requests of {user} to be counted")


# --- Pure: which runtime gets the list, and the merge ------------------------------------


def test_only_vllm_gets_the_list_as_it_is() -> None:
    listed = {"prompt": ["a", "b"]}
    assert not fanned_out(Runtime.VLLM, listed)
    assert fanned_out(Runtime.LLAMACPP, listed)
    assert fanned_out(Runtime.EXTERNAL, listed)
    # One prompt (a string, one array of token ids, a list of one) goes as it is.
    for one in ("a", [1, 2, 3], ["a"], [[1, 2]]):
        assert not fanned_out(Runtime.LLAMACPP, {"prompt": one})
    assert fanned_out(Runtime.LLAMACPP, {"prompt": [[1, 2], [3]]})


def test_each_prompt_goes_with_a_request_id_of_its_own() -> None:
    """vLLM takes X-Request-ID as its engine's request id, unique among those it runs:
    the parts of one request, sent at once, each get their own (a UUID, as model servers
    get ids), the same for the same request and position."""
    sent = {"x-request-id": "0f3c6a9e2d1b4c5a8e7f6a5b4c3d2e1f", "accept": "*/*"}
    parts = [part_headers(sent, position) for position in range(16)]
    ids = [headers["x-request-id"] for headers in parts]
    assert len(set(ids)) == 16 and sent["x-request-id"] not in ids
    assert all(str(uuid.UUID(value)) == value for value in ids)
    assert part_headers(sent, 3) == parts[3] and parts[3]["accept"] == "*/*"
    assert part_headers({"accept": "*/*"}, 1) == {"accept": "*/*"}


def test_the_merge_counts_n_choices_per_prompt() -> None:
    answers = [
        {
            "id": f"cmpl-{position}",
            "created": position,
            "choices": [{"index": 1, "text": f"{position}b"}, {"index": 0, "text": f"{position}a"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            "timings": {"prompt_n": 3},
        }
        for position in range(3)
    ]
    merged = merge_answers(answers, 2)
    assert [(c["index"], c["text"]) for c in merged["choices"]] == [
        (0, "0a"), (1, "0b"), (2, "1a"), (3, "1b"), (4, "2a"), (5, "2b"),
    ]  # fmt: skip
    assert (merged["id"], merged["created"]) == ("cmpl-0", 0)
    assert merged["usage"] == {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
    assert "timings" not in merged


# --- Through the gateway ------------------------------------------------------------------


def test_a_list_of_prompts_is_answered_in_order_with_usage_summed(
    gateway: RunningService,
    module_contract: RunningService,
    signer: TokenSigner,
    llm: LlmServer,
    server_ids: dict[str, str],
) -> None:
    body = {"prompt": PROMPTS, "max_tokens": 3, "temperature": 0, "logprobs": 1, "echo": True}
    ai = openai.OpenAI(
        base_url=f"{gateway.url}/v1",
        api_key=signer.sign("lea", teams=["nlp"]),
        max_retries=0,
        timeout=120,
    )
    complete(gateway, signer, "lea", model=llm.alias, prompt="Hi", max_tokens=1)  # routed
    answer = ai.completions.create(
        model=llm.alias,
        prompt=PROMPTS,
        max_tokens=3,
        temperature=0,
        logprobs=1,
        echo=True,
    )
    assert [choice.index for choice in answer.choices] == list(range(len(PROMPTS)))
    singles = []
    for prompt, choice in zip(PROMPTS, answer.choices, strict=True):
        assert choice.text.startswith(prompt)  # echo, per prompt
        assert choice.logprobs is not None and choice.logprobs.tokens
        single = httpx.post(
            f"{llm.url}/completions",
            json={**body, "model": llm.alias, "prompt": prompt},
            timeout=60,
        ).json()
        # Greedy decoding: what the server answers the prompt alone.
        assert choice.text == single["choices"][0]["text"]
        assert choice.logprobs.tokens == single["choices"][0]["logprobs"]["tokens"]
        singles.append(single["usage"])
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == sum(usage["prompt_tokens"] for usage in singles)
    assert answer.usage.completion_tokens == sum(usage["completion_tokens"] for usage in singles)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens

    # The server's own path answers the same.
    own = complete(
        gateway,
        signer,
        "lea",
        f"/{server_ids['own']}/v1/completions",
        **{**body, "prompt": PROMPTS[:4]},
    )
    assert own.status_code == 200, own.text
    assert [c["text"] for c in own.json()["choices"]] == [c.text for c in answer.choices[:4]]

    # The contract counts each call once, with the summed usage.
    usage = recorded(module_contract, signer, "lea", 3)
    first_four = sum(u["prompt_tokens"] for u in singles[:4])
    assert usage["prompt_tokens"] == answer.usage.prompt_tokens + first_four + 1
    assert usage["completion_tokens"] == (
        answer.usage.completion_tokens + sum(u["completion_tokens"] for u in singles[:4]) + 1
    )


def test_a_list_of_prompts_is_not_streamed(
    gateway: RunningService, signer: TokenSigner, llm: LlmServer
) -> None:
    answer = complete(gateway, signer, "sam", model=llm.alias, prompt=["a", "b"], stream=True)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("stream_with_prompt_list", "stream")


def test_a_prompt_the_server_refuses_fails_the_list(
    gateway: RunningService, signer: TokenSigner, llm: LlmServer
) -> None:
    """A prompt over the server's context (2048 tokens): its 400 is the answer."""
    prompts = ["One two", "word " * 3000, "Three four"]
    answer = complete(gateway, signer, "ned", model=llm.alias, prompt=prompts, max_tokens=1)
    assert answer.status_code == 400, answer.text
    assert "context" in answer.json()["error"]["message"]


def test_tokens_are_held_for_every_prompt(
    gateway: RunningService, module_contract: RunningService, signer: TokenSigner, llm: LlmServer
) -> None:
    put_contract(module_contract.url, signer, "user", "tia", token_budget=100)
    # 16 prompts x 8 tokens = 128 held: over the budget, though one prompt's 8 are not.
    over = complete(gateway, signer, "tia", model=llm.alias, prompt=PROMPTS, max_tokens=8)
    assert over.status_code == 429, over.text
    assert over.json()["error"]["code"] == "token_budget_exhausted"
    assert "128 more tokens" in over.json()["error"]["message"]
    fits = complete(gateway, signer, "tia", model=llm.alias, prompt=PROMPTS[:12], max_tokens=8)
    assert fits.status_code == 200, fits.text
    assert len(fits.json()["choices"]) == 12


def test_tokens_are_held_for_every_answer_and_by_llama_cpp_s_own_length(
    gateway: RunningService, module_contract: RunningService, signer: TokenSigner, llm: LlmServer
) -> None:
    """`n` answers of `max_tokens` each are n times the tokens; llama.cpp reads its
    `n_predict` before `max_tokens`, so that is the length held."""
    put_contract(module_contract.url, signer, "user", "uma", token_budget=100)
    prompt = "One two three"
    over = complete(gateway, signer, "uma", model=llm.alias, prompt=prompt, max_tokens=8, n=16)
    assert over.status_code == 429, over.text
    assert "128 more tokens" in over.json()["error"]["message"]
    longer = complete(
        gateway, signer, "uma", model=llm.alias, prompt=prompt, max_tokens=1, n_predict=200
    )
    assert longer.status_code == 429, longer.text
    assert "200 more tokens" in longer.json()["error"]["message"]
    fits = complete(gateway, signer, "uma", model=llm.alias, prompt=prompt, max_tokens=90)
    assert fits.status_code == 200, fits.text


def test_own_servers_are_exempt_from_the_rate_limit(
    gateway: RunningService,
    module_contract: RunningService,
    signer: TokenSigner,
    llm: LlmServer,
    server_ids: dict[str, str],
) -> None:
    """Ivy (team nlp) may send 2 requests a minute, but her team's server is exempt."""
    put_contract(
        module_contract.url,
        signer,
        "user",
        "ivy",
        requests_per_minute=2,
        rate_limit_exempt_own_servers=True,
    )
    # Routed first (as bob), so that ivy's requests are all counted.
    complete(gateway, signer, "bob", model=SHARED, prompt="Hi", max_tokens=1)
    complete(gateway, signer, "bob", model=llm.alias, prompt="Hi", max_tokens=1)
    early_in_a_minute()
    for _ in range(4):
        mine = complete(gateway, signer, "ivy", model=llm.alias, prompt=["a", "b"], max_tokens=1)
        assert mine.status_code == 200, mine.text
    by_id = complete(
        gateway, signer, "ivy", f"/{server_ids['own']}/v1/completions", prompt="a", max_tokens=1
    )
    assert by_id.status_code == 200, by_id.text
    for _ in range(2):
        theirs = complete(gateway, signer, "ivy", model=SHARED, prompt="a", max_tokens=1)
        assert theirs.status_code == 200, theirs.text
    refused = complete(gateway, signer, "ivy", model=SHARED, prompt="a", max_tokens=1)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "request_rate_exceeded"
    # Every answered request is counted, the exempt ones too.
    usage = recorded(module_contract, signer, "ivy", 7)
    assert usage["requests"] == 7
    assert usage["completion_tokens"] == 4 * 2 + 1 + 2
