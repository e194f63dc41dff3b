"""A server's own paths (`/{server_id}/v1/…`, where Traefik's per-server route leads)
through the gateway as a process, end to end: the SmolLM2 server behind an external
ModelServe made Ready by the operator, and the contract service. Both doors pass the
same policy and accounting."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llm import LlmServer
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_clients import error_of
from modelserve.testbed.testing_services import service_on_fresh_schema

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.llm]

SECRET = "gateway-tests-secret-of-at-least-32-bytes"  # the contract fixture's too
# The seeds' bodies, which name no model (a short answer asked of the chat one).
SEED_CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "temperature": 0.7}
SEED_COMPLETION = {"prompt": "Once upon a time", "max_tokens": 100}


def token(subject: str, *, roles: tuple[str, ...] = (), teams: tuple[str, ...] = ()) -> str:
    return TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET))).sign(
        subject, roles=roles, teams=teams
    )


def http(gateway: str, subject: str | None, teams: tuple[str, ...] = ("nlp",)) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token(subject, teams=teams)}"} if subject else {}
    return httpx.Client(base_url=gateway, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def server_id(
    crds: KubeCluster, operator: RunningOperator, cluster_namespace: str, llm: LlmServer
) -> str:
    """The uid of an external ModelServe for SmolLM2 (alice's, team nlp), once Ready."""
    body = {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": "smollm2", "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {
            "runtime": "external",
            "model": {"servedName": llm.alias},
            "external": {"url": llm.url},
        },
    }
    crds.kubectl("apply", "-n", cluster_namespace, "-f", "-", stdin=yaml.safe_dump(body))

    def ready() -> str | None:
        found = crds.get_json("ms", "smollm2", "-n", cluster_namespace)
        ready = (found.get("status") or {}).get("phase") == "Ready"
        return str(found["metadata"]["uid"]) if ready else None

    return wait_for(ready, timeout=90, what="the SmolLM2 ModelServe to be Ready")


@pytest.fixture(scope="module")
def contract(module_contract: RunningService) -> RunningService:
    return module_contract


@pytest.fixture(scope="module")
def gateway(
    gateway_kube: str,
    database_url: str,
    testbed_dir: Path,
    contract: RunningService,
    server_id: str,
) -> Iterator[str]:
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "server-paths-admin-password",
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_CONTRACT_URL": contract.url,
        "GATEWAY_USAGE_FLUSH_SECONDS": "0.2",
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_paths"
    ) as service:
        with http(service.url, "alice") as alice:

            def routed() -> bool:
                answer = alice.get(f"/{server_id}/v1/models")
                return answer.status_code == 200

            wait_for(routed, timeout=30, what="the gateway to know the server")
        yield service.url


def contracts(contract: RunningService) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token('root', roles=('admin',))}"}
    return httpx.Client(base_url=contract.url, headers=headers, timeout=30)


def test_the_seeds_bodies_without_a_model_are_answered(
    gateway: str, server_id: str, llm: LlmServer
) -> None:
    with http(gateway, "alice") as alice:
        listed = alice.get(f"/{server_id}/v1/models").json()
        assert [model["id"] for model in listed["data"]] == [llm.alias]
        # One of them, as the openai client's models.retrieve asks on this base URL.
        one = alice.get(f"/{server_id}/v1/models/{llm.alias}")
        assert one.status_code == 200, one.text
        assert one.json() == listed["data"][0]
        unknown = alice.get(f"/{server_id}/v1/models/not-{llm.alias}")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "model_not_found"
        chat = alice.post(f"/{server_id}/v1/chat/completions", json={**SEED_CHAT, "max_tokens": 16})
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"]
        completion = alice.post(f"/{server_id}/v1/completions", json=SEED_COMPLETION)
        assert completion.status_code == 200, completion.text
        assert completion.json()["choices"][0]["text"]
        # Naming the model is fine; naming another is a clear 400.
        named = alice.post(
            f"/{server_id}/v1/completions", json={**SEED_COMPLETION, "model": llm.alias}
        )
        assert named.status_code == 200, named.text
        other = alice.post(
            f"/{server_id}/v1/completions", json={**SEED_COMPLETION, "model": "gpt-4o"}
        )
        assert other.status_code == 400
        error = error_of(other)
        assert (error["code"], error["param"]) == ("model_mismatch", "model")
        assert "gpt-4o" in error["message"] and llm.alias in error["message"]


def test_who_may_call_a_server_s_own_paths(gateway: str, server_id: str) -> None:
    path = f"/{server_id}/v1/chat/completions"
    with http(gateway, None) as anonymous:
        missing = anonymous.post(path, json=SEED_CHAT)
        assert missing.status_code == 401
        assert error_of(missing)["code"] == "token_missing"
    with http(gateway, "mallory", teams=("vision",)) as mallory:
        refused = mallory.post(path, json=SEED_CHAT)
        assert refused.status_code == 403
        assert (error_of(refused)["code"], error_of(refused)["type"]) == (
            "forbidden",
            "permission_error",
        )
    with http(gateway, "alice") as alice:
        unknown = alice.post(f"/{uuid.uuid4()}/v1/chat/completions", json=SEED_CHAT)
        assert unknown.status_code == 404
        assert error_of(unknown)["code"] == "server_not_found"
        # The gateway's own paths are not taken for a server's.
        assert alice.get("/health").status_code == 200
        assert alice.get("/v1/models").status_code == 200


def test_one_token_budget_and_one_usage_for_both_doors(
    gateway: str, server_id: str, llm: LlmServer, contract: RunningService
) -> None:
    # erin (team nlp) may use alice's server, within a budget of 400 tokens a day.
    with contracts(contract) as admin:
        limits = {"token_budget": 400, "budget_period": "day"}
        assert admin.put("/contracts/user/erin", json=limits).status_code == 200

        def usage() -> dict[str, Any]:
            found: dict[str, Any] = admin.get(
                "/usage", params={"user": "erin", "period": "day"}
            ).json()
            return found

        def counted(requests: int) -> dict[str, Any]:
            """erin's usage, once the contract service has `requests` of her requests."""

            def arrived() -> dict[str, Any] | None:
                found = usage()
                return found if found["requests"] == requests else None

            done: dict[str, Any] = wait_for(
                arrived, timeout=15, what=f"{requests} requests' usage at the contract service"
            )
            return done

        short = {**SEED_CHAT, "max_tokens": 4}
        with http(gateway, "erin") as erin:
            own = erin.post(f"/{server_id}/v1/chat/completions", json=short)
            assert own.status_code == 200, own.text
            first = counted(1)
            assert first["completion_tokens"] > 0
            assert [model["model"] for model in first["models"]] == [llm.alias]

            shared = erin.post("/v1/chat/completions", json={**short, "model": llm.alias})
            assert shared.status_code == 200, shared.text
            both = counted(2)
            assert both["prompt_tokens"] > first["prompt_tokens"]

            # More than is left of the budget: refused alike by both doors.
            greedy = {**SEED_CHAT, "max_tokens": 400}
            refusals = [
                erin.post(f"/{server_id}/v1/chat/completions", json=greedy),
                erin.post("/v1/chat/completions", json={**greedy, "model": llm.alias}),
            ]
            assert [answer.status_code for answer in refusals] == [429, 429]
            errors = [error_of(answer) for answer in refusals]
            assert errors[0] == errors[1]
            assert errors[0]["code"] == "token_budget_exhausted"
            assert errors[0]["type"] == "rate_limit_error"
        assert usage()["requests"] == 2
