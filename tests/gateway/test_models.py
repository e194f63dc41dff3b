"""GET /models: the real download service's records, as the caller's contract allows them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from modelserve.testbed.platform import RunningService

if TYPE_CHECKING:  # a fixture's type: conftest modules are pytest's to import
    from tests.gateway.conftest import ModelStore

pytestmark = [pytest.mark.postgres, pytest.mark.minio]

AsUser = Callable[..., httpx.Client]


def test_models_lists_the_downloaded_records_to_anyone_with_a_token(
    start_gateway: Callable[..., RunningService], model_store: ModelStore, as_user: AsUser
) -> None:
    gateway = start_gateway(GATEWAY_DOWNLOAD_URL=model_store.url)
    health = httpx.get(f"{gateway.url}/health")
    assert health.status_code == 200
    assert health.json()["service"] == "gateway"
    anonymous = httpx.get(f"{gateway.url}/models")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "token_missing"

    listed = as_user(gateway, "alice").get("/models")
    assert listed.status_code == 200, listed.text
    records = {record["id"]: record for record in listed.json()}
    assert records == {"tiny-chat": model_store.gguf, "tiny-st": model_store.folder}
    assert records["tiny-chat"]["format"] == "gguf"
    assert records["tiny-st"]["format"] == "safetensors"
    assert records["tiny-st"]["uri"].endswith("/")


def test_a_contracts_model_allowlist_narrows_the_list(
    start_gateway: Callable[..., RunningService],
    model_store: ModelStore,
    contract_service: RunningService,
    as_user: AsUser,
) -> None:
    root = as_user(contract_service, "root", roles=("admin",))
    assert root.put("/contracts/user/alice", json={"models": ["Tiny-C*"]}).status_code == 200
    assert root.put("/contracts/user/carol", json={"models": ["Tiny-ST"]}).status_code == 200
    team = {"models": ["Tiny-Chat", "Other"]}
    assert root.put("/contracts/team/nlp", json=team).status_code == 200
    gateway = start_gateway(
        GATEWAY_DOWNLOAD_URL=model_store.url, GATEWAY_CONTRACT_URL=contract_service.url
    )

    def names(subject: str, roles: tuple[str, ...] = (), teams: tuple[str, ...] = ()) -> set[str]:
        listed = as_user(gateway, subject, roles, teams).get("/models")
        assert listed.status_code == 200, listed.text
        return {record["name"] for record in listed.json()}

    assert names("alice") == {"Tiny-Chat"}
    assert names("carol") == {"Tiny-ST"}
    # A team's list holds as well as its member's own.
    assert names("dave", teams=("nlp",)) == {"Tiny-Chat"}
    assert names("carol", teams=("nlp",)) == set()
    assert names("bob") == {"Tiny-Chat", "Tiny-ST"}  # no contract, no model limit by default
    assert names("root", ("admin",)) == {"Tiny-Chat", "Tiny-ST"}

    # A contract service that does not answer refuses rather than shows everything.
    contract_service.stop()
    refused = as_user(gateway, "alice").get("/models")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "contract_unavailable"
