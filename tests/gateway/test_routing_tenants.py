"""Nobody captures another's traffic, against real components: the control plane with the
operator, the gateway and the contract service as processes, and model servers of this
test's own on loopback (behind `external` ModelServes) that record what reaches each.

Anyone may serve a model under any name. Here bob, alice's team mate, serves alice's
model name for the team, and the platform's model names for himself; alice's requests,
the reward model her model names, the platform's models for others, and admins' requests
must never reach bob's server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from kubernetes import client as k8s
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import StartupError
from modelserve.testbed.testing_clients import error_of
from modelserve.testbed.testing_services import service_on_fresh_schema
from modelserve.testbed.threaded_http import ThreadedApp

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

SECRET = "gateway-tests-secret-of-at-least-32-bytes"  # the module contract's too
HI = [{"role": "user", "content": "Hi"}]
ALICES = "rt-alice-chat"  # alice's model; bob serves that name for team nlp too
CHAT = "rt-platform-chat"  # the platform's; bob serves that name for himself
JUDGE = "rt-platform-judge"  # the platform's judge; bob serves that name too


class RecordingServer(ThreadedApp):
    """An OpenAI-shaped server on loopback, in a thread, that lists `models` and answers
    every chat completion with its own name; it keeps the `model` of each request."""

    handler_cancellation = False  # as aiohttp serves by default

    def __init__(self, name: str, models: tuple[str, ...]) -> None:
        self.name = name
        self.models = models
        super().__init__()
        self.requests: list[str] = []

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.models]})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(str(body.get("model")))
        message = {"role": "assistant", "content": f"answered by {self.name}"}
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
        if body.get("logprobs"):  # a judge's verdict: "yes", rather sure
            likely = [{"token": "no", "logprob": -2.0}]
            choice["logprobs"] = {
                "content": [{"token": "yes", "logprob": -0.2, "top_logprobs": likely}]
            }
        usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        return web.json_response(
            {
                "id": f"chatcmpl-{self.name}",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [choice],
                "usage": usage,
            }
        )


def modelserve(
    name: str, url: str, served: str, labels: dict[str, str], **scaling: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "runtime": "external",
        "model": {"servedName": served},
        "external": {"url": url},
    }
    if scaling:
        spec["scaling"] = scaling
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def token(subject: str, *, roles: tuple[str, ...] = (), teams: tuple[str, ...] = ()) -> str:
    """Signed when the module is collected, which can be long before it runs (a loaded
    two-worker run took 44 minutes, and this module's setup met tokens past their usual 15
    minutes): they live for a day."""
    return TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET))).sign(
        subject, roles=roles, teams=teams, expires_in=86400
    )


WHO = {
    "alice": token("alice", teams=("nlp",)),
    "bob": token("bob", teams=("nlp",)),
    "carol": token("carol", teams=("nlp",)),
    "dora": token("dora"),  # no team, no server: the platform's models only
    "root": token("root", roles=("admin",)),
}


@pytest.fixture(scope="module")
def platform_namespace(kube_api: k8s.ApiClient) -> Iterator[str]:
    """A namespace of the platform's own servers, as GATEWAY_PLATFORM_NAMESPACES names it."""
    name = f"rt-platform-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def model_servers() -> Iterator[dict[str, RecordingServer]]:
    with (
        RecordingServer("platform", (CHAT, JUDGE)) as platform,
        RecordingServer("alice", (ALICES,)) as alice,
        RecordingServer("bob", (ALICES, CHAT, JUDGE)) as bob,
    ):
        yield {"platform": platform, "alice": alice, "bob": bob}


@pytest.fixture(scope="module")
def servers(
    crds: KubeCluster,
    operator: RunningOperator,
    cluster_namespace: str,
    platform_namespace: str,
    model_servers: dict[str, RecordingServer],
) -> None:
    """The platform's chat and judge; alice's model, whose best-of-n asks the platform's
    judge; bob's servers of the same three names. Once all are Ready."""
    platform, alice, bob = (model_servers[n] for n in ("platform", "alice", "bob"))
    admins = {OWNER_LABEL: "root"}
    judged = {"algorithm": "best-of-n", "budget": 2, "reward": "judge", "rewardModel": JUDGE}
    alices = {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}
    placed = {
        platform_namespace: [
            modelserve("chat", platform.url, CHAT, admins),
            modelserve("judge", platform.url, JUDGE, admins),
        ],
        cluster_namespace: [
            modelserve("alice-chat", alice.url, ALICES, alices, **judged),
            modelserve("bob-for-team", bob.url, ALICES, {OWNER_LABEL: "bob", TEAM_LABEL: "nlp"}),
            modelserve("bob-chat", bob.url, CHAT, {OWNER_LABEL: "bob"}),
            modelserve("bob-judge", bob.url, JUDGE, {OWNER_LABEL: "bob"}),
        ],
    }
    for namespace, bodies in placed.items():
        crds.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(bodies))

    def ready() -> bool:
        for namespace, bodies in placed.items():
            items = crds.get_json("-n", namespace, "ms")["items"]
            phases = [(item.get("status") or {}).get("phase") for item in items]
            if len(items) != len(bodies) or set(phases) != {"Ready"}:
                return False
        return True

    wait_for(ready, timeout=120, what="the module's servers to be Ready")


@pytest.fixture(scope="module")
def gateway(
    gateway_kube: str,
    database_url: str,
    testbed_dir: Path,
    module_contract: RunningService,
    cluster_namespace: str,
    platform_namespace: str,
    servers: None,
) -> Iterator[str]:
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "routing-tenants-admin-password",
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_CONTRACT_URL": module_contract.url,
        # This module's servers only (the platform's namespace is watched besides).
        "GATEWAY_WATCH_NAMESPACES": cluster_namespace,
        "GATEWAY_NAMESPACE": cluster_namespace,
        "GATEWAY_PLATFORM_NAMESPACES": platform_namespace,
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_tenants"
    ) as service:
        with http(service.url, "root") as root:
            last: list[str] = []

            def routed() -> bool:
                answer = root.get("/v1/models")
                last[:] = [f"{answer.status_code} {answer.text[:400]}"]
                listed = answer.json().get("data", []) if answer.status_code == 200 else []
                return {ALICES, CHAT, JUDGE} <= {model["id"] for model in listed}

            try:  # on a timeout, say what the gateway answered and logged
                service.process.wait_until(routed, 90, "knowing the module's servers")
            except StartupError as error:
                raise AssertionError(f"{error}\nlast GET /v1/models: {last}") from error
        yield service.url


def http(gateway: str, who: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {WHO[who]}"}
    return httpx.Client(base_url=gateway, headers=headers, timeout=60)


def answered_by(gateway: str, who: str, model: str, times: int = 4, **extra: Any) -> list[str]:
    """Which server answered each of `times` chat completions of `who` for `model`."""
    found = []
    with http(gateway, who) as client:
        for _ in range(times):
            answer = client.post(
                "/v1/chat/completions", json={"model": model, "messages": HI, **extra}
            )
            assert answer.status_code == 200, answer.text
            found.append(answer.json()["choices"][0]["message"]["content"])
    return found


def test_a_team_mate_never_captures_my_models_traffic(gateway: str) -> None:
    """bob serves alice's model name for their team: alice's requests stay on her server
    (a plain pass-through: budget 1), bob's on his, and carol, who has neither, shares
    the team's two."""
    assert set(answered_by(gateway, "alice", ALICES, budget=1)) == {"answered by alice"}
    assert set(answered_by(gateway, "bob", ALICES, budget=1)) == {"answered by bob"}
    assert set(answered_by(gateway, "carol", ALICES, budget=1)) == {
        "answered by alice",
        "answered by bob",
    }


def test_the_platforms_models_are_never_replaced_by_a_users(gateway: str) -> None:
    """bob serves the platform's model name: everyone else, admins included, reaches the
    platform's server; bob reaches his own."""
    for who in ("alice", "dora", "root"):
        assert set(answered_by(gateway, who, CHAT)) == {"answered by platform"}, who
    assert set(answered_by(gateway, "bob", CHAT)) == {"answered by bob"}


def test_a_reward_model_resolves_among_the_platforms_servers_only(
    gateway: str, model_servers: dict[str, RecordingServer]
) -> None:
    """alice's model scores its candidates with the judge it names: the platform's, never
    bob's server of that name, which would read alice's prompts and answers."""
    platform, bob = model_servers["platform"], model_servers["bob"]
    platform.requests.clear()
    bob.requests.clear()
    # The ModelServe's defaults: best-of-n over 2 candidates, judged by JUDGE.
    answers = answered_by(gateway, "alice", ALICES, times=3)
    assert JUDGE not in bob.requests
    assert len(platform.requests) >= 3  # every request had its candidates judged there
    assert set(platform.requests) == {JUDGE}
    assert set(answers) == {"answered by alice"}
    assert bob.requests == []


def test_v1_models_lists_only_what_the_caller_may_use(gateway: str) -> None:
    def listed(who: str) -> dict[str, str]:
        with http(gateway, who) as client:
            models = client.get("/v1/models").json()["data"]
        return {model["id"]: model["owned_by"] for model in models}

    # The model of each name that the caller's requests go to.
    assert listed("dora") == {CHAT: "root", JUDGE: "root"}
    assert listed("alice") == {ALICES: "alice", CHAT: "root", JUDGE: "root"}
    assert listed("bob") == {ALICES: "bob", CHAT: "bob", JUDGE: "bob"}
    with http(gateway, "dora") as dora:
        hidden = dora.get(f"/v1/models/{ALICES}")
    assert hidden.status_code == 404
    assert error_of(hidden)["code"] == "model_not_found"


def test_v1_models_follows_the_callers_contract(
    gateway: str, module_contract: RunningService
) -> None:
    """carol's contract allows the platform's chat only: /v1/models hides the team's
    model and the judge from her, as GET /models hides records, and naming one is 404."""
    headers = {"Authorization": f"Bearer {WHO['root']}"}
    allowed = httpx.put(
        f"{module_contract.url}/contracts/user/carol", json={"models": [CHAT]}, headers=headers
    )
    assert allowed.status_code == 200, allowed.text
    with http(gateway, "carol") as carol:
        models = carol.get("/v1/models")
        assert models.status_code == 200, models.text
        assert [model["id"] for model in models.json()["data"]] == [CHAT]
        assert carol.get(f"/v1/models/{CHAT}").json()["id"] == CHAT
        hidden = carol.get(f"/v1/models/{ALICES}")
        assert hidden.status_code == 404
        error = error_of(hidden)
        assert (error["type"], error["code"]) == ("invalid_request_error", "model_not_found")
    with http(gateway, "root") as root:  # admins see every model
        assert {ALICES, CHAT, JUDGE} <= {m["id"] for m in root.get("/v1/models").json()["data"]}
