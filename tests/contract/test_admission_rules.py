"""The admission webhook's pure rules: operator-owned flags, model uris, external URLs,
the owner patch, and the supervisor of the background loops."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.owned_flags import (
    env_prefix_clash,
    expanded_args,
    flag_name,
    owned_env,
    owned_flags,
)
from modelserve.contract.admission import (
    Malformed,
    Refused,
    Requester,
    Review,
    model_id_of,
    owner_patch,
    response,
)
from modelserve.contract.external_urls import url_refusal

PREFIX = "s3://inference-models/models/"


@pytest.mark.parametrize(
    ("runtime", "args", "flag"),
    [
        ("vllm", ["--model", "/etc/passwd"], "--model"),
        ("vllm", ["--port=9000"], "--port=9000"),
        ("vllm", ["--served_model_name", "gpt-4"], "--served_model_name"),
        ("vllm", ["--download-dir", "/tmp"], "--download-dir"),
        ("llamacpp", ["-hf", "someone/model"], "-hf"),
        ("llamacpp", ["--hf-repo=someone/model"], "--hf-repo=someone/model"),
        ("llamacpp", ["-mu", "http://evil/m.gguf"], "-mu"),
        ("llamacpp", ["--ctx-size", "1024", "-m", "/other.gguf"], "-m"),
        ("llamacpp", ["--api-key-file", "/k"], "--api-key-file"),
        ("llamacpp", ["--alias", "gpt-4"], "--alias"),
        # vLLM's argparse takes unambiguous prefixes of long options.
        ("vllm", ["--hos", "0.0.0.0"], "--hos"),
        ("vllm", ["--served-model", "gpt-4"], "--served-model"),
        ("vllm", ["--api-ke=secret"], "--api-ke=secret"),
        ("llamacpp", ["--hf-repo-draft", "someone/draft"], "--hf-repo-draft"),
        ("llamacpp", ["-mmu", "http://evil/mmproj.gguf"], "-mmu"),
        # Where media may be fetched from is the platform's.
        ("vllm", ["--allowed-media-domains", "169.254.169.254"], "--allowed-media-domains"),
        ("vllm", ["--allowed-local-media-path=/"], "--allowed-local-media-path=/"),
    ],
)
def test_operator_owned_flags_are_found(runtime: str, args: list[str], flag: str) -> None:
    assert owned_flags(runtime, args) == [flag]


def test_other_flags_and_values_pass() -> None:
    assert owned_flags("llamacpp", ["--ctx-size", "1024", "--temp", "0.5", "--port-x"]) == []
    assert owned_flags("vllm", ["--max-num-seqs", "64", "--model-impl", "auto"]) == []
    assert flag_name("-") is None and flag_name("value") is None
    assert owned_env("llamacpp", ["LLAMA_ARG_HF_REPO", "HF_HOME"]) == ["LLAMA_ARG_HF_REPO"]
    assert owned_env("vllm", ["VLLM_API_KEY", "HF_HOME"]) == ["VLLM_API_KEY"]
    redirects = ["VLLM_MEDIA_URL_ALLOW_REDIRECTS"]
    assert owned_env("vllm", redirects) == redirects
    gpus = ["NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "CUDA_VISIBLE_DEVICES"]
    assert owned_env("llamacpp", gpus) == owned_env("vllm", gpus) == gpus[:2]
    assert expanded_args(["--ctx-size", "$(CTX)", "a$$(b)", "cost: $5 (max)"]) == [
        "$(CTX)",
        "a$$(b)",
    ]
    # llama-server takes whole option names only: a prefix is another (unknown) option.
    assert owned_flags("llamacpp", ["--hos", "x"]) == []


def test_what_takes_code_or_weights_from_elsewhere_is_for_admins_only() -> None:
    """A tokenizer or config of the hub, a repository's code run in the server, the hub
    itself: a tenant's server runs the model the platform fetched, offline."""
    for args in (["--trust-remote-code"], ["--tokenizer", "evil/tok"], ["--trust-remote"]):
        assert owned_flags("vllm", args) == []  # an admin's to set
        assert owned_flags("vllm", args, admin=False) == [args[0]]
    for name in ("HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        assert owned_env("vllm", [name]) == []
        assert owned_env("vllm", [name], admin=False) == [name]
    # llama.cpp's downloads by variable are nobody's: the flags are owned already.
    assert owned_env("llamacpp", ["LLAMA_ARG_HFD_REPO", "LLAMA_ARG_MMPROJ_URL"]) == [
        "LLAMA_ARG_HFD_REPO",
        "LLAMA_ARG_MMPROJ_URL",
    ]
    assert env_prefix_clash("vllm", "HF_") is None
    assert env_prefix_clash("vllm", "HF_", admin=False) == "HF_ENDPOINT"


@pytest.mark.parametrize(
    "uri",
    [
        "s3://other-bucket/models/m/m.gguf",
        "s3://inference-models/elsewhere/m.gguf",
        "s3://inference-models/models/../secrets/x",
        "s3://inference-models/models/m/../../x",
        "s3://inference-models/models/m//x",
        "s3://inference-models/models/m",
        "s3://inference-models/models/m/a\x00b",
        "s3://inference-models/models/.hidden/x",
    ],
)
def test_model_uris_outside_the_prefix_or_odd_are_refused(uri: str) -> None:
    with pytest.raises(Refused, match=r"^\[model_uri_refused\]"):
        model_id_of(uri, PREFIX)


def test_the_model_id_comes_from_the_uri() -> None:
    assert model_id_of(f"{PREFIX}tiny-chat/Tiny-Chat.Q4_0.gguf", PREFIX) == "tiny-chat"
    assert model_id_of(f"{PREFIX}tiny-st/", PREFIX) == "tiny-st"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost/v1",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/v1",
        "http://172.20.0.1/v1",
        "http://192.168.1.1/v1",
        "http://100.64.0.1/v1",
        "http://[::1]/v1",
        "http://[fd00::1]/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 of 169.254.169.254
        "http://[2002:a9fe:a9fe::1]/v1",  # 6to4
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/v1",  # Teredo
        "http://0.0.0.0/v1",
        "http://203.0.113.9/v1?",
        "http://203.0.113.9/x#",
        "http://user:pass@203.0.113.9/v1",
        "file:///etc/passwd",
        "http://198.18.0.5/v1",  # the cluster range given below
        "http://" + "a" * 64 + ".example.com/v1",  # a label IDNA refuses: no 500
    ],
)
def test_external_urls_that_lead_inside_are_refused(url: str) -> None:
    refusal = asyncio.run(url_refusal(url, cluster_cidrs=["198.18.0.0/15"], allowed=[]))
    assert refusal is not None, url


def test_public_and_allowlisted_external_urls_pass() -> None:
    assert asyncio.run(url_refusal("https://203.0.113.9/v1", cluster_cidrs=[], allowed=[])) is None
    opened = ["10.9.0.0/16", "localhost"]
    for url in ("http://10.9.1.1/v1", "http://localhost:8000/v1"):
        assert asyncio.run(url_refusal(url, cluster_cidrs=[], allowed=opened)) is None


def _review(**request: Any) -> dict[str, Any]:
    body = {
        "uid": "u1",
        "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": []},
        "namespace": "ns",
        "name": "m",
        "object": {"metadata": {"name": "m"}, "spec": {}},
        **request,
    }
    return {"request": body}


def test_a_generated_name_is_taken_from_the_object() -> None:
    """A create with generateName: the request names nothing, the object has the name."""
    body = _review(name="", object={"metadata": {"name": "m-x7k2p", "generateName": "m-"}})
    assert Review.from_body(body).name == "m-x7k2p"


def test_the_owner_and_the_first_team_are_stamped_on_a_create() -> None:
    review = Review.from_body(_review())
    alice = Requester(user="alice", teams=("nlp",), admin=False, delegating=False)
    assert owner_patch(review, alice) == [
        {
            "op": "add",
            "path": "/metadata/labels",
            "value": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"},
        }
    ]
    two_teams = Requester(user="alice", teams=("a", "b"), admin=False, delegating=False)
    labelled = Review.from_body(_review(object={"metadata": {"labels": {"x": "y"}}}))
    # The first team: the one the create is decided for, whose totals it then counts in.
    assert owner_patch(labelled, two_teams) == [
        {"op": "add", "path": "/metadata/labels/llm.modelserve.io~1owner", "value": "alice"},
        {"op": "add", "path": "/metadata/labels/llm.modelserve.io~1team", "value": "a"},
    ]
    gateway = Requester(user="system:serviceaccount:a:b", teams=(), admin=False, delegating=True)
    assert owner_patch(review, gateway) == []
    colon = Requester(user="oidc:alice", teams=(), admin=False, delegating=False)
    with pytest.raises(Refused, match=r"^\[invalid_owner\]"):
        owner_patch(review, colon)
    answer = response("u1", True, patch=owner_patch(review, alice))["response"]
    assert json.loads(base64.b64decode(answer["patch"]))[0]["value"][OWNER_LABEL] == "alice"


@pytest.mark.parametrize("body", [None, {}, [], {"request": {}}, {"request": {"uid": 3}}])
def test_a_review_without_a_uid_is_malformed(body: Any) -> None:
    with pytest.raises(Malformed):
        Review.from_body(body)


@pytest.mark.parametrize(
    "request_fields",
    [
        {"operation": "CONNECT"},
        {"userInfo": "root"},
        {"userInfo": {"username": "a", "groups": "modelserve:admins"}},
        {"object": []},
        {"name": "a\x00b"},
    ],
)
def test_a_review_with_odd_fields_is_refused(request_fields: dict[str, Any]) -> None:
    with pytest.raises(Refused, match=r"^\[invalid_review\]"):
        Review.from_body(_review(**request_fields))
