"""The runtimes' own endpoints passed through the gateway: /v1/rerank, /v1/score,
/v1/tokenize, /v1/detokenize and /v1/audio/transcriptions, with the proxy's auth,
contract, and metrics, and a clear 404 in OpenAI's shape where the model's runtime does
not serve one.

End to end: the gateway process (with the operator, PostgreSQL and the contract
service) in front of a real llama.cpp server (`llama-server`, which serves /tokenize and
/detokenize at its root and answers 501 to /v1/rerank without `--reranking`), of a
second one started with `--reranking` (which serves /v1/rerank), of
llama-cpp-python's server (which serves none of them), and of a stand-in for a runtime
that serves rerank, score and transcriptions (`Reranker`: the test bed has no vLLM, which
alone serves /v1/score, and no speech model), which records what reached it. Which
runtimes are refused before anything is sent is a pure rule, checked on given targets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from pydantic import SecretStr

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL, Runtime
from modelserve.common.tokens import TokenSettings, TokenSigner
from modelserve.gateway.openai_errors import OpenAIError
from modelserve.gateway.proxy_requests import (
    CHAT,
    DETOKENIZE,
    RERANK,
    SCORE,
    TOKENIZE,
    TRANSCRIPTIONS,
    check_served,
    form_fields,
)
from modelserve.gateway.routing import Target
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.llama_server import LlamaServer, start_llama_server
from modelserve.testbed.llm import MODEL_ALIAS, LlmServer
from modelserve.testbed.platform import RunningOperator, RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.testing_clients import error_of, metric
from modelserve.testbed.testing_services import service_on_fresh_schema
from modelserve.testbed.threaded_http import ThreadedApp

SECRET = "gateway-tests-secret-of-at-least-32-bytes"
LLAMA = "pt-llama-server"  # served names: llama-server's ModelServe
PYTHON = MODEL_ALIAS  # llama-cpp-python's (its alias: the probe looks for it)
RERANKER = "pt-reranker"  # the stand-in's
RERANKING = "pt-llama-reranking"  # llama-server's with --reranking


# --- the rule, on given targets ----------------------------------------------------------


def target(runtime: Runtime) -> Target:
    return Target("id", "ns", "m", "m", "", True, "Ready", "", runtime=runtime)


@pytest.mark.parametrize(
    ("operation", "refused"),
    [
        (SCORE, {Runtime.LLAMACPP}),
        (RERANK, set()),
        (TOKENIZE, set()),
        (DETOKENIZE, set()),
        (TRANSCRIPTIONS, set()),
        (CHAT, set()),
    ],
)
def test_a_runtime_without_the_endpoint_is_refused_before_anything_is_sent(
    operation: Any, refused: set[Runtime]
) -> None:
    for runtime in Runtime:
        if runtime in refused:
            with pytest.raises(OpenAIError) as error:
                check_served(operation, target(runtime))
            assert error.value.status_code == 404
            assert error.value.code == "endpoint_not_supported"
        else:
            check_served(operation, target(runtime))


def test_a_forms_text_fields_are_read_and_its_files_left() -> None:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="model"\r\n\r\n'
        "whisper\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
        "RIFF....\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    fields = form_fields(body, f"multipart/form-data; boundary={boundary}")
    assert fields == {"model": "whisper"}
    with pytest.raises(OpenAIError) as error:
        form_fields(b"{}", "application/json")
    assert error.value.status_code == 400


# --- the platform ------------------------------------------------------------------------


def modelserve(name: str, url: str, served: str) -> dict[str, Any]:
    return {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"}},
        "spec": {"runtime": "external", "model": {"servedName": served}, "external": {"url": url}},
    }


def token(subject: str, roles: tuple[str, ...] = ()) -> str:
    signer = TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))
    return signer.sign(subject, teams=("nlp",), roles=roles)


def post(gateway: str, path: str, body: dict[str, Any], subject: str = "alice") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token(subject)}"}
    return httpx.post(f"{gateway}{path}", json=body, headers=headers, timeout=60)


class Reranker(ThreadedApp):
    """An external model server with vLLM's /v1/rerank, /v1/score and
    /v1/audio/transcriptions (answers of their shape, made from what it was sent), which
    keeps each request's path, content type and body as it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[str, str, bytes]] = []

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/rerank", self._rerank)
        app.router.add_post("/v1/score", self._score)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": RERANKER, "object": "model"}]})

    async def _keep(self, request: web.Request) -> bytes:
        body = await request.read()
        self.received.append((request.path, request.headers.get("Content-Type", ""), body))
        return body

    async def _rerank(self, request: web.Request) -> web.Response:
        asked = json.loads(await self._keep(request))
        results = [
            {"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(len(asked["documents"]))
        ]
        return web.json_response({"model": asked["model"], "results": results})

    async def _score(self, request: web.Request) -> web.Response:
        asked = json.loads(await self._keep(request))
        return web.json_response(
            {"object": "list", "data": [{"index": 0, "score": 0.25}]} | {"model": asked["model"]}
        )

    async def _transcribe(self, request: web.Request) -> web.Response:
        body = await self._keep(request)
        return web.json_response({"text": f"{len(body)} bytes"})


@pytest.fixture(scope="module")
def reranker() -> Iterator[Reranker]:
    with Reranker() as server:
        yield server


@pytest.fixture(scope="module")
def reranking(testbed_dir: Path) -> Iterator[LlamaServer]:
    """llama-server serving /v1/rerank (its scores from SmolLM2 mean nothing: what is
    tested is that the gateway passes the request and the answer on)."""
    server = start_llama_server(
        testbed_dir / "passthrough-reranking",
        parallel=2,
        context=2048,
        options=["--alias", RERANKING, "--reranking"],
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llama(testbed_dir: Path) -> Iterator[LlamaServer]:
    server = start_llama_server(
        testbed_dir / "passthrough-llama",
        parallel=2,
        context=2048,
        # The served name: the operator's probe finds it in /v1/models.
        options=["--alias", LLAMA],
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    crds: KubeCluster,
    operator: RunningOperator,
    cluster_namespace: str,
    gateway_kube: str,
    database_url: str,
    testbed_dir: Path,
    module_contract: RunningService,
    llama: LlamaServer,
    llm: LlmServer,
    reranker: Reranker,
    reranking: LlamaServer,
) -> Iterator[str]:
    for body in (
        modelserve("pt-llama", llama.url, LLAMA),
        modelserve("pt-python", llm.url, PYTHON),
        modelserve("pt-reranker", reranker.url, RERANKER),
        modelserve("pt-reranking", reranking.url, RERANKING),
    ):
        crds.kubectl("apply", "-n", cluster_namespace, "-f", "-", stdin=yaml.safe_dump(body))
    settings = {
        "JWT_SECRET": SECRET,
        "GATEWAY_ADMIN_PASSWORD": "passthrough-tests-admin-password",
        "GATEWAY_KUBECONFIG": gateway_kube,
        "GATEWAY_CONTRACT_URL": module_contract.url,
    }
    with service_on_fresh_schema(
        "gateway", database_url, testbed_dir / "logs", settings, prefix="gateway_passthrough"
    ) as service:

        def routed() -> bool:
            answers = [
                post(service.url, "/v1/tokenize", {"model": model, "content": "a"})
                for model in (LLAMA, PYTHON)
            ]
            # 404 model_not_found until the gateway knows the server.
            return all(
                a.status_code == 200 or error_of(a)["code"] == "endpoint_not_supported"
                for a in answers
            )

        def reranker_routed() -> bool:
            return all(
                post(
                    service.url, "/v1/rerank", {"model": model, "query": "q", "documents": ["d"]}
                ).status_code
                == 200
                for model in (RERANKER, RERANKING)
            )

        wait_for(routed, timeout=120, what="the gateway to route both servers")
        wait_for(reranker_routed, timeout=120, what="the gateway to route the stand-in")
        yield service.url


def counted(gateway: str, route: str, status: str, model: str = LLAMA) -> float:
    return metric(
        gateway, "modelserve_gateway_requests_total", model=model, route=route, status=status
    )


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_llama_server_tokenizes_and_detokenizes_through_the_gateway(gateway: str) -> None:
    before = counted(gateway, "/v1/tokenize", "200")
    tokens = post(gateway, "/v1/tokenize", {"model": LLAMA, "content": "Hello world"})
    assert tokens.status_code == 200, tokens.text
    ids = tokens.json()["tokens"]
    assert ids and all(isinstance(i, int) for i in ids)
    text = post(gateway, "/v1/detokenize", {"model": LLAMA, "tokens": ids})
    assert text.status_code == 200, text.text
    assert text.json()["content"].strip() == "Hello world"
    wait_for(
        lambda: counted(gateway, "/v1/tokenize", "200") == before + 1,
        timeout=10,
        what="the tokenize request to be counted",
    )


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_llama_server_reranks_through_the_gateway(gateway: str, reranking: LlamaServer) -> None:
    asked = {"model": RERANKING, "query": "a red flower", "documents": ["blue sky", "red rose"]}
    before = counted(gateway, "/v1/rerank", "200", model=RERANKING)
    answer = post(gateway, "/v1/rerank", asked)
    assert answer.status_code == 200, answer.text
    direct = httpx.post(f"{reranking.url}/rerank", json=asked, timeout=60)
    assert direct.status_code == 200, direct.text
    assert answer.json()["results"] == direct.json()["results"]
    assert {r["index"] for r in answer.json()["results"]} == {0, 1}
    wait_for(
        lambda: counted(gateway, "/v1/rerank", "200", model=RERANKING) == before + 1,
        timeout=10,
        what="llama-server's rerank to be counted",
    )


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_rerank_and_score_pass_on_as_they_came(gateway: str, reranker: Reranker) -> None:
    before = counted(gateway, "/v1/rerank", "200", model=RERANKER)
    asked = {"model": RERANKER, "query": "which is red?", "documents": ["sky", "rose", "sea"]}
    seen = len(reranker.received)
    answer = post(gateway, "/v1/rerank", asked)
    assert answer.status_code == 200, answer.text
    assert [r["index"] for r in answer.json()["results"]] == [0, 1, 2]
    path, content_type, body = reranker.received[seen]
    assert path == "/v1/rerank" and content_type.startswith("application/json")
    assert json.loads(body) == asked
    wait_for(
        lambda: counted(gateway, "/v1/rerank", "200", model=RERANKER) == before + 1,
        timeout=10,
        what="the rerank to be counted",
    )
    scored = post(gateway, "/v1/score", {"model": RERANKER, "text_1": "a", "text_2": "b"})
    assert scored.status_code == 200, scored.text
    assert scored.json()["data"] == [{"index": 0, "score": 0.25}]
    assert reranker.received[-1][0] == "/v1/score"


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_a_transcription_form_passes_on_whole(gateway: str, reranker: Reranker) -> None:
    audio = bytes(range(256)) * 64  # binary, every byte value, 16 KiB
    headers = {"Authorization": f"Bearer {token('alice')}"}
    answer = httpx.post(
        f"{gateway}/v1/audio/transcriptions",
        data={"model": RERANKER, "language": "en"},
        files={"file": ("speech.wav", audio, "audio/wav")},
        headers=headers,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    path, content_type, body = reranker.received[-1]
    assert answer.json() == {"text": f"{len(body)} bytes"}
    assert path == "/v1/audio/transcriptions"
    assert content_type.startswith("multipart/form-data; boundary=")
    assert audio in body and b'name="language"' in body and RERANKER.encode() in body


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_the_gateways_root_tokenizes_as_vllm_serves_it(gateway: str) -> None:
    before = counted(gateway, "/tokenize", "200")
    tokens = post(gateway, "/tokenize", {"model": LLAMA, "content": "Hello world"})
    assert tokens.status_code == 200, tokens.text
    direct = post(gateway, "/v1/tokenize", {"model": LLAMA, "content": "Hello world"})
    assert tokens.json() == direct.json()
    text = post(gateway, "/detokenize", {"model": LLAMA, "tokens": tokens.json()["tokens"]})
    assert text.status_code == 200, text.text
    assert text.json()["content"].strip() == "Hello world"
    wait_for(
        lambda: counted(gateway, "/tokenize", "200") == before + 1,
        timeout=10,
        what="the root tokenize request to be counted under its own route",
    )
    # Its errors are OpenAI's too.
    unknown = post(gateway, "/tokenize", {"model": "no-such-model", "content": "a"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_a_servers_own_path_tokenizes_without_a_model(
    gateway: str, crds: KubeCluster, cluster_namespace: str
) -> None:
    uid = crds.get_json("ms", "pt-llama", "-n", cluster_namespace)["metadata"]["uid"]
    tokens = post(gateway, f"/{uid}/v1/tokenize", {"content": "Hello world"})
    assert tokens.status_code == 200, tokens.text
    direct = post(gateway, "/v1/tokenize", {"model": LLAMA, "content": "Hello world"})
    assert tokens.json() == direct.json()


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_what_the_model_server_does_not_serve_is_a_404_in_openais_shape(gateway: str) -> None:
    # llama-cpp-python has no /tokenize: its 404 is said plainly.
    missing = post(gateway, "/v1/tokenize", {"model": PYTHON, "content": "Hello"})
    assert missing.status_code == 404
    error = error_of(missing)
    assert (error["type"], error["code"]) == ("invalid_request_error", "endpoint_not_supported")
    assert PYTHON in error["message"] and "/v1/tokenize" in error["message"]
    # llama-server without --reranking answers 501 to /v1/rerank: a 404 too.
    before = counted(gateway, "/v1/rerank", "404")
    rerank = post(gateway, "/v1/rerank", {"model": LLAMA, "query": "a", "documents": ["a", "b"]})
    assert rerank.status_code == 404
    assert error_of(rerank)["code"] == "endpoint_not_supported"
    assert "501" in error_of(rerank)["message"]
    wait_for(
        lambda: counted(gateway, "/v1/rerank", "404") == before + 1,
        timeout=10,
        what="the refused rerank to be counted",
    )
    # An audio form reaches llama-server, whose text model has no audio: 404.
    files = {"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")}
    headers = {"Authorization": f"Bearer {token('alice')}"}
    audio = httpx.post(
        f"{gateway}/v1/audio/transcriptions",
        data={"model": LLAMA},
        files=files,
        headers=headers,
        timeout=60,
    )
    assert audio.status_code == 404, audio.text
    assert error_of(audio)["code"] == "endpoint_not_supported"
    # A form without its model is the client's mistake.
    nameless = httpx.post(
        f"{gateway}/v1/audio/transcriptions", files=files, headers=headers, timeout=60
    )
    assert nameless.status_code == 400 and error_of(nameless)["param"] == "model"


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_the_caller_must_sign_in(gateway: str) -> None:
    for path in ("/v1/tokenize", "/v1/detokenize", "/v1/rerank", "/v1/score", "/tokenize"):
        answer = httpx.post(f"{gateway}{path}", json={"model": LLAMA, "content": "a"})
        assert answer.status_code == 401, path
        assert error_of(answer)["type"] == "invalid_request_error"


@pytest.mark.kube
@pytest.mark.postgres
@pytest.mark.llm
def test_the_contracts_model_allowlist_applies(
    gateway: str, module_contract: RunningService
) -> None:
    headers = {"Authorization": f"Bearer {token('root', ('admin',))}"}
    allowed = httpx.put(
        f"{module_contract.url}/contracts/user/carol", json={"models": [PYTHON]}, headers=headers
    )
    assert allowed.status_code == 200, allowed.text
    refused = post(gateway, "/v1/tokenize", {"model": LLAMA, "content": "a"}, subject="carol")
    assert refused.status_code == 403, refused.text
    assert error_of(refused)["code"] == "model_not_allowed"
    # Her allowed model goes through (and its runtime's answer is hers).
    mine = post(gateway, "/v1/tokenize", {"model": PYTHON, "content": "a"}, subject="carol")
    assert error_of(mine)["code"] == "endpoint_not_supported"
