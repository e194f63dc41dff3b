"""A request's id from the caller through the gateway to the contract service and the
model server, and back; in the JSON logs of both services."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx

from modelserve.common.request_ids import model_server_request_id
from modelserve.testbed.polling import wait_for
from modelserve.testbed.recording_upstream import answer_text
from modelserve.testbed.request_path import RequestPath, chat_body, wait_routed


def json_lines(log: Path) -> list[dict[str, Any]]:
    """The JSON objects of a service's log (its other lines, if any, left out)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def lines_with(log: Path, request_id: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(log) if line.get("request_id") == request_id]


def test_the_callers_request_id_reaches_the_contract_service_and_the_model_server(
    request_path: RequestPath,
) -> None:
    gateway = request_path.start_gateway()
    wait_routed(request_path, gateway)
    request_id = f"trace-{uuid.uuid4().hex}"
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=chat_body(request_path, stream=False),
        headers=request_path.user_headers(**{"X-Request-ID": request_id}),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers.get_list("x-request-id") == [request_id]
    assert answer.json()["choices"][0]["message"]["content"] == answer_text(20)
    # The model server was asked with it.
    assert request_path.upstream.headers[-1]["x-request-id"] == model_server_request_id(request_id)
    # The contract service logged the call the decision waited for (the caller's limits,
    # read for this new gateway's first request: POST /leases) under that id (a JSON line
    # with the service's name), and the gateway its access line.
    contract_log = request_path.contract.process.log_path
    seen = wait_for(
        lambda: lines_with(contract_log, request_id),
        timeout=30,
        what="a contract log line with the request id",
    )
    assert all(line["service"] == "contract" for line in seen)
    assert any("/leases" in line["message"] for line in seen), seen
    gateway_lines = wait_for(
        lambda: lines_with(gateway.process.log_path, request_id),
        timeout=30,
        what="a gateway log line with the request id",
    )
    access = [line for line in gateway_lines if line["logger"] == "uvicorn.access"]
    assert access and "/v1/chat/completions" in access[0]["message"], gateway_lines
    assert {"time", "level", "logger", "message", "service"} <= access[0].keys()


def test_an_unsafe_request_id_is_replaced_by_one_the_gateway_makes(
    request_path: RequestPath,
) -> None:
    gateway = request_path.start_gateway()
    wait_routed(request_path, gateway)
    unsafe = "x" * 129  # longer than an id may be
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=chat_body(request_path, stream=False),
        headers=request_path.user_headers(**{"X-Request-ID": unsafe}),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    made = answer.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made), made
    # The model server got the gateway's id, never the caller's.
    assert request_path.upstream.headers[-1]["x-request-id"] == made  # a UUID already
    # Without any id, one is made too (and another each time).
    first = httpx.get(f"{gateway.url}/health", timeout=10).headers["x-request-id"]
    second = httpx.get(f"{gateway.url}/health", timeout=10).headers["x-request-id"]
    assert first != second


def test_a_stream_carries_the_request_id(request_path: RequestPath) -> None:
    gateway = request_path.start_gateway()
    wait_routed(request_path, gateway)
    request_id = f"stream-{uuid.uuid4().hex}"
    headers = request_path.user_headers(**{"X-Request-ID": request_id})
    body = chat_body(request_path, stream=True)
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers.get_list("x-request-id") == [request_id]
        text = "".join(answer.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    assert request_path.upstream.headers[-1]["x-request-id"] == model_server_request_id(request_id)


def test_model_servers_get_the_id_as_a_uuid() -> None:
    """llama-cpp-python's server answers 400 to an X-Request-ID that is not a UUID: ids
    that are UUIDs go as they are, others as their UUID 5 (the same each time)."""
    made = uuid.uuid4()
    assert model_server_request_id(made.hex) == made.hex
    assert model_server_request_id(str(made)) == str(made)
    job_item = "job-gen_40f7a6d7c96c40d9884e5b20-0-1"
    sent = model_server_request_id(job_item)
    assert (
        sent == str(uuid.uuid5(uuid.NAMESPACE_OID, job_item)) == model_server_request_id(job_item)
    )
    assert sent != model_server_request_id("job-gen_40f7a6d7c96c40d9884e5b20-0-2")
