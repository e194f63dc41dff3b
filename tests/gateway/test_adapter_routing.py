"""LoRA adapters in the route table and the request the gateway sends, as pure logic:
ModelServe objects with spec.adapters in, lookups, model lists and bodies out."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from modelserve.common.tokens import Claims
from modelserve.gateway.adapters import adapter_body, lora_field, same_view
from modelserve.gateway.openai_errors import OpenAIError
from modelserve.gateway.routing import RouteTable, Target, Unknown, target_from_body

NOW = int(time.time())
ALICE = Claims(sub="alice", teams=[], roles=[], iss="m", aud="m", exp=NOW + 60, iat=NOW, jti="t")
BOB = Claims(sub="bob", teams=[], roles=[], iss="m", aud="m", exp=NOW + 60, iat=NOW, jti="t")


def body(name: str, owner: str, runtime: str = "llamacpp", **spec: Any) -> dict[str, Any]:
    model = {"uri": "s3://b/models/m/m.gguf", "servedName": f"{name}-base"}
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": f"uid-{name}",
            "labels": {"llm.modelserve.io/owner": owner},
        },
        "spec": {"runtime": runtime, "model": model, **spec},
        "status": {"phase": "Ready"},
    }


ADAPTERS = [
    {"name": "pirate", "uri": "s3://b/models/p/p.gguf"},
    {"name": "poet", "uri": "s3://b/models/q/q.gguf", "scale": 0.5},
]


def table(*bodies: dict[str, Any]) -> RouteTable:
    routes = RouteTable()
    routes.replace([target_from_body(b) for b in bodies])
    routes.synced = True
    return routes


def test_an_adapters_name_resolves_to_its_server_as_the_adapter() -> None:
    routes = table(body("smol", "alice", adapters=ADAPTERS))
    found = routes.nearest("poet", ALICE)
    assert len(found) == 1
    (poet,) = found
    assert (poet.server_id, poet.served_name, poet.base_name) == ("uid-smol", "poet", "smol-base")
    assert poet.adapter is not None and (poet.adapter.index, poet.adapter.scale) == (1, 0.5)
    # Nobody else's: an adapter is used under the same tiers as its server.
    assert routes.nearest("poet", BOB) == []
    assert isinstance(routes.lookup("pirate", BOB), Unknown)


def test_the_model_list_holds_each_adapter_beside_its_model() -> None:
    routes = table(body("smol", "alice", adapters=ADAPTERS))
    listed = {t.served_name: t.base_name for t in routes.models(ALICE)}
    assert listed == {"smol-base": None, "pirate": "smol-base", "poet": "smol-base"}


def test_llamacpp_requests_carry_every_adapters_scale() -> None:
    base = target_from_body(body("smol", "alice", adapters=ADAPTERS))
    poet = base.as_adapter("poet")
    assert poet is not None and base.as_adapter("nobody") is None
    assert lora_field(base) == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]
    assert lora_field(poet) == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.5}]

    payload = {"model": "poet", "messages": [], "lora": [{"id": 0, "scale": 4.0}]}
    sent = json.loads(adapter_body(poet, payload, b"ignored"))
    assert sent["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.5}]
    assert sent["cache_prompt"] is False
    assert payload == sent  # changed in place, for the calls made of it later
    # A form (an audio transcription) cannot carry the scales: llama-server would apply
    # every adapter at its own.
    with pytest.raises(OpenAIError) as refused:
        adapter_body(base, {"model": "smol-base"}, b"--form--", form=True)
    assert (refused.value.status_code, refused.value.code) == (400, "adapters_need_json")


def test_other_servers_get_the_body_as_it_came() -> None:
    plain = target_from_body(body("smol", "alice"))
    vllm = target_from_body(
        body(
            "big",
            "alice",
            runtime="vllm",
            resources={"gpus": 1},
            model={"uri": "s3://b/models/m/", "servedName": "big"},
            adapters=[{"name": "pirate", "uri": "s3://b/models/p/"}],
        )
    )
    for target in (plain, vllm, vllm.as_adapter("pirate")):
        assert isinstance(target, Target)
        payload: dict[str, Any] = {"model": "x"}
        assert adapter_body(target, payload, b"as it came") == b"as it came"
        assert adapter_body(target, payload, b"a form", form=True) == b"a form"
        assert payload == {"model": "x"}


def test_a_held_request_keeps_its_adapter() -> None:
    base = target_from_body(body("smol", "alice", adapters=ADAPTERS))
    poet = base.as_adapter("poet")
    assert poet is not None
    assert same_view(poet, base) == poet
    assert same_view(base, base) == base
    gone = target_from_body(body("smol", "alice"))  # its adapters were removed meanwhile
    assert same_view(poet, gone) == gone


def test_the_tables_current_version_of_an_adapter_is_still_the_adapter() -> None:
    """A scaled request's calls name the model by its target's served name, taken from
    the table's current version once the server serves: for vLLM that must stay the
    adapter's name."""
    routes = table(body("smol", "alice", adapters=ADAPTERS))
    poet = routes.nearest("poet", ALICE)[0]
    assert routes.current(poet) == poet
    base = routes.nearest("smol-base", ALICE)[0]
    assert routes.current(base) == base
    routes.replace([target_from_body(body("smol", "alice"))])
    assert routes.current(poet).served_name == "smol-base"
