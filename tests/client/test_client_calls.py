"""The client's pure core: each call's method, path, query and body, and how answers
and refusals are read (modelserve.client.calls and errors)."""

from __future__ import annotations

import json

import pytest

from modelserve.client import calls
from modelserve.client.answers import Registration, Version
from modelserve.client.errors import ModelServeError, error_of
from modelserve.client.settings import ClientSettings
from modelserve.client.waiting import settled


def test_the_seed_s_calls_go_where_the_gateway_has_them() -> None:
    assert (calls.health().method, calls.health().path) == ("GET", "/health")
    assert calls.gpu_stats().path == "/gpu"
    assert calls.system_stats().path == "/system"
    assert calls.power_profile().path == "/settings/power_profile"
    chosen = calls.set_power_profile("quiet")
    assert (chosen.method, chosen.body) == ("POST", {"profile": "quiet"})
    assert calls.logs("gateway", 5).query == (("lines", "5"),)
    assert calls.stop("abc").method == "DELETE" and calls.stop("abc").path == "/stop/abc"


def test_ids_stay_one_path_segment() -> None:
    assert calls.registration("a/b?c").path == "/models/registrations/a%2Fb%3Fc"
    assert calls.logs("../config").path == "/logs/..%2Fconfig"


def test_list_models_sends_only_the_filters_given_and_repeats_tags() -> None:
    assert calls.list_models().query == ()
    call = calls.list_models(name="smol", tag=["a", "b"], origin="register", limit=5, offset=0)
    assert call.query == (
        ("name", "smol"), ("tag", "a"), ("tag", "b"), ("origin", "register"),
        ("limit", "5"), ("offset", "0"),
    )  # fmt: skip


def test_register_names_exactly_one_checkpoint() -> None:
    call = calls.register_model("v1", source="4090", tags="step5000,math", uri="s3://b/k")
    assert call.body == {"id": "v1", "source": "4090", "tags": "step5000,math", "uri": "s3://b/k"}
    listed = calls.register_model("v1", tags=("a", "b"), name="m", upload_id="u1")
    assert listed.body == {"id": "v1", "tags": ["a", "b"], "name": "m", "upload_id": "u1"}
    with pytest.raises(ValueError, match="exactly one"):
        calls.register_model("v1")
    with pytest.raises(ValueError, match="exactly one"):
        calls.register_model("v1", uri="s3://b/k", upload_id="u1")


def test_complete_upload_lists_the_parts_in_order() -> None:
    call = calls.complete_upload("u1", {2: "e2", 1: "e1"})
    assert call.body == {
        "parts": [{"part_number": 1, "etag": "e1"}, {"part_number": 2, "etag": "e2"}]
    }


def test_set_active_serve_and_chat_bodies() -> None:
    assert calls.set_active_model("v1").body == {"id": "v1"}
    assert calls.set_active_model("v1", reason="r").body == {"id": "v1", "reason": "r"}
    assert calls.active_models(name="m").query == (("name", "m"),)
    assert calls.serve(model_name="m", replicas=2, gpus=None).body == {
        "model_name": "m",
        "replicas": 2,
    }
    with pytest.raises(ValueError):
        calls.serve()
    chat = calls.chat("m", [{"role": "user", "content": "hi"}], max_tokens=4)
    assert chat.path == "/v1/chat/completions"
    assert chat.body == {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                         "max_tokens": 4}  # fmt: skip
    with pytest.raises(ValueError, match="stream"):
        calls.chat("m", [], stream=True)


def test_answers_are_typed_and_keep_unknown_fields() -> None:
    body = {"status": "ok", "active_models": ["m"], "gpu": {"device_count": 6, "x": 1}, "new": 2}
    health = calls.answer(calls.health(), 200, json.dumps(body).encode())
    assert health.active_models == ["m"] and health.gpu is not None
    assert health.gpu.device_count == 6
    assert health.model_dump()["new"] == 2 and health.model_dump()["gpu"]["x"] == 1
    models = calls.answer(calls.list_models(), 200, b'[{"id": "a", "name": "n", "tags": ["t"]}]')
    assert [(m.id, m.tags) for m in models] == [("a", ["t"])]
    assert calls.answer(calls.delete_upload("u"), 204, b"") is None


def test_an_answer_of_another_shape_is_an_error_not_a_crash() -> None:
    with pytest.raises(ModelServeError) as raised:
        calls.answer(calls.health(), 200, b"[]")
    assert raised.value.code == "unexpected_answer"


def test_the_platform_s_errors_and_openai_s() -> None:
    platform = error_of(404, b'{"error": {"code": "model_not_found", "message": "no v9"}}')
    assert (platform.status, platform.code, platform.message) == (404, "model_not_found", "no v9")
    openai = error_of(
        400,
        b'{"error": {"message": "bad", "type": "invalid_request_error", "param": "n",'
        b' "code": null}}',
    )
    assert (openai.code, openai.details) == ("invalid_request_error", "n")
    text = error_of(502, b"<html>bad gateway</html>")
    assert (text.code, text.message) == ("http_502", "<html>bad gateway</html>")
    with pytest.raises(ModelServeError) as raised:
        calls.answer(calls.registration("v9"), 404, b'{"error": {"code": "x", "message": "y"}}')
    assert raised.value.as_dict() == {"status": 404, "code": "x", "message": "y", "details": None}


def test_settings_from_arguments_then_the_environment() -> None:
    env = {"GATEWAY_URL": "http://g:1/", "MODELSERVE_TOKEN": "t"}
    assert ClientSettings.resolve(env=env) == ClientSettings("http://g:1", "t", 60.0)
    both = {**env, "MODELSERVE_URL": "http://m:2"}
    assert ClientSettings.resolve(env=both).base_url == "http://m:2"
    named = ClientSettings.resolve("http://a", "k", 5, env=both)
    assert (named.base_url, named.token, named.timeout) == ("http://a", "k", 5)
    assert named.headers() == {"Authorization": "Bearer k"}
    assert ClientSettings.resolve(env={}).headers() == {}


def _job(state: str, error: dict[str, str] | None = None) -> Registration:
    return Registration.model_validate(
        {"model_id": "v1", "kind": "register", "state": state, "error": error}
    )


def test_waiting_for_a_registration() -> None:
    assert not settled(_job("transferring"))
    assert settled(_job("ready"))
    with pytest.raises(ModelServeError) as raised:
        settled(_job("failed", {"code": "not_gguf", "message": "not a GGUF file"}))
    assert (raised.value.code, raised.value.status) == ("not_gguf", None)
    with pytest.raises(ModelServeError, match="registration_cancelled"):
        settled(_job("cancelled"))


def test_a_version_whose_runtime_images_could_not_be_read_is_read() -> None:
    """GET /version says "unavailable" where it cannot read the cluster (operations-api.md)."""
    answer = {
        "api_version": "v1",
        "platform_version": "0.1.0",
        "python_version": "3.11.7",
        "kubernetes_version": "unavailable",
        "runtime_images": "unavailable",
    }
    assert calls.version().parse(answer) == Version(**answer)
