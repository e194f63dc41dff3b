"""The serving loop for real: a 2-replica llama.cpp server whose pods run llama-server on
the pod network, reached through the gateway's /v1 and Traefik's /{server-id}/v1."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelserve.testbed.polling import wait_for
from modelserve.testbed.processes import descendants
from modelserve.testbed.testing_loop import SERVED_NAME, Loop, modelserve, wait_ready

pytestmark = [pytest.mark.kube, pytest.mark.minio, pytest.mark.postgres]

HI = [{"role": "user", "content": "Hi"}]


def chat(loop: Loop, url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(url, json=body, headers=headers or loop.headers(), timeout=120)


def test_the_route_answers_the_seeds_bodies_from_the_model(loop: Loop) -> None:
    """Seed 002's bodies, as they are (no `model`), through Traefik at /{server-id}/v1."""
    answer = chat(loop, f"{loop.route_url}/chat/completions", {"messages": HI, "temperature": 0.7})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].strip()

    answer = chat(
        loop, f"{loop.route_url}/completions", {"prompt": "Once upon a time", "max_tokens": 100}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"].strip()


def test_structured_output_keeps_to_its_json_schema(loop: Loop) -> None:
    """`response_format` with a JSON schema, in OpenAI's shape, goes through the gateway to
    llama-server untouched, and its grammar holds the model's answer to the schema."""
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "founded": {"type": "integer", "minimum": 1, "maximum": 2100},
        },
        "required": ["city", "founded"],
        "additionalProperties": False,
    }
    body = {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": "Name a city and the year it was founded."}],
        "max_tokens": 128,
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "city", "strict": True, "schema": schema},
        },
    }
    answer = chat(loop, f"{loop.gateway.url}/v1/chat/completions", body)
    assert answer.status_code == 200, answer.text
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    found = json.loads(choice["message"]["content"])
    assert set(found) == {"city", "founded"}, found
    assert isinstance(found["city"], str) and len(found["city"]) <= 24, found
    assert isinstance(found["founded"], int) and 1 <= found["founded"] <= 2100, found


def test_the_route_wants_a_token_of_someone_who_may_use_the_server(loop: Loop) -> None:
    url = f"{loop.route_url}/chat/completions"
    body = {"messages": HI, "max_tokens": 4}
    assert httpx.post(url, json=body, timeout=30).status_code == 401
    bad = httpx.post(url, json=body, headers={"Authorization": "Bearer nonsense"}, timeout=30)
    assert bad.status_code == 401
    other = chat(loop, url, body, **loop.headers("bob"))
    assert other.status_code == 403, other.text
    assert other.json()["error"]["message"]


def _requests_per_pod(loop: Loop) -> Counter[str]:
    """Each server's own count of the requests it took (llama-server logs "processing task"
    for each; its request log is off), from its log."""
    counts: Counter[str] = Counter()
    for pod in loop.ready_pods():
        log = loop.kube.kubectl(
            "logs", "-n", loop.namespace, pod["metadata"]["name"], "-c", "server"
        )
        counts[pod["metadata"]["name"]] = log.count("processing task")
    return counts


def test_requests_spread_over_both_replicas(loop: Loop) -> None:
    before = _requests_per_pod(loop)
    assert len(before) == 2
    body = {"model": SERVED_NAME, "messages": HI, "max_tokens": 8}
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(
                lambda _: chat(loop, f"{loop.gateway.url}/v1/chat/completions", body), range(16)
            )
        )
    assert [a.status_code for a in answers] == [200] * 16
    served = _requests_per_pod(loop) - before
    assert sum(served.values()) == 16, served
    assert len(served) == 2 and min(served.values()) >= 4, served


def test_a_killed_server_restarts_and_the_gateway_routes_around_it(loop: Loop) -> None:
    pids = loop.server_pids()
    assert len(pids) == 2
    victim, pid = sorted(pids.items())[0]
    os.kill(pid, signal.SIGKILL)
    body = {"model": SERVED_NAME, "messages": HI, "max_tokens": 4}
    # While it is down (and before the gateway even sees it go), every request is answered.
    for _ in range(6):
        answer = chat(loop, f"{loop.gateway.url}/v1/chat/completions", body)
        assert answer.status_code == 200, answer.text

    def restarted() -> dict[str, Any] | None:
        pod = loop.kube.get_json("pod", victim, "-n", loop.namespace)
        status = pod["status"]["containerStatuses"][0]
        ready = status["ready"] and status["restartCount"] >= 1
        return status if ready else None

    status = wait_for(restarted, timeout=90, what=f"{victim} to restart its server")
    terminated = status["lastState"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (128 + signal.SIGKILL, "Error")
    assert loop.server_pids()[victim] != pid
    wait_ready(loop.kube, loop.namespace, loop.name, 2)


def _stream(loop: Loop, started: threading.Barrier) -> str:
    """A long streamed chat; "ok", or the error the stream ended with."""
    body = {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 300,
        "ignore_eos": True,
        "stream": True,
    }
    url = f"{loop.gateway.url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=loop.headers(), timeout=120) as answer:
        assert answer.status_code == 200
        waited = False
        for line in answer.iter_lines():
            if not waited and line.startswith("data: "):
                waited = True
                started.wait(timeout=60)
            if line.startswith("data: ") and '"error"' in line:
                return str(json.loads(line.removeprefix("data: "))["error"]["code"])
            if line == "data: [DONE]":
                return "ok"
    return "cut"


def test_only_the_requests_on_a_killed_server_fail(loop: Loop) -> None:
    """Four streams over two servers (two each: the fewest in flight); one server dies
    mid-stream: its two streams end with a clear error, the other two finish."""
    wait_ready(loop.kube, loop.namespace, loop.name, 2)
    started = threading.Barrier(5)
    with ThreadPoolExecutor(max_workers=4) as pool:
        streams = [pool.submit(_stream, loop, started) for _ in range(4)]
        started.wait(timeout=60)
        pid = sorted(loop.server_pids().items())[0][1]
        os.kill(pid, signal.SIGKILL)
        ends = Counter(stream.result(timeout=180) for stream in streams)
    assert ends == {"ok": 2, "upstream_broken": 2}, ends
    wait_ready(loop.kube, loop.namespace, loop.name, 2)


def test_a_spec_change_rolls_with_no_failed_request(loop: Loop) -> None:
    wait_ready(loop.kube, loop.namespace, loop.name, 2)
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def traffic() -> None:
        nonlocal answered
        body = {"model": SERVED_NAME, "messages": HI, "max_tokens": 4}
        while not stop.is_set():
            try:
                answer = chat(loop, f"{loop.gateway.url}/v1/chat/completions", body)
            except httpx.HTTPError as error:
                failures.append(repr(error))
                continue
            if answer.status_code == 200:
                answered += 1
            else:
                failures.append(f"{answer.status_code} {answer.text}")

    workers = [threading.Thread(target=traffic) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        before = {pod["metadata"]["name"] for pod in loop.pods()}
        changed = modelserve(loop.name, "", 2)
        found = loop.kube.get_json("ms", loop.name, "-n", loop.namespace)
        changed["spec"]["model"]["uri"] = found["spec"]["model"]["uri"]
        changed["spec"]["args"] = [*changed["spec"]["args"], "--temp", "0.5"]
        loop.kube.kubectl("apply", "-n", loop.namespace, stdin=yaml.safe_dump(changed))

        def rolled() -> bool:
            now = {pod["metadata"]["name"] for pod in loop.ready_pods()}
            return len(now) == 2 and not now & before and len(loop.pods()) == 2

        wait_for(rolled, timeout=240, what="both replicas to be replaced")
        wait_ready(loop.kube, loop.namespace, loop.name, 2)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=150)
    assert answered > 0
    assert not failures, failures


def test_a_deleted_modelserve_leaves_no_process(loop: Loop, smollm2_uri: str) -> None:
    name = "short-lived"
    loop.kube.kubectl(
        "apply", "-n", loop.namespace, stdin=yaml.safe_dump(modelserve(name, smollm2_uri, 1))
    )
    wait_ready(loop.kube, loop.namespace, name, 1)
    assert loop.kube.runner is not None
    pids = [
        process.pid
        for worker in list(loop.kube.runner.workers.values())
        if worker.pod["metadata"]["labels"].get("llm.modelserve.io/modelserve") == name
        for process in worker.processes.values()
        if process.pid is not None
    ]
    assert pids
    running = descendants(pids)
    loop.kube.kubectl("delete", "ms", name, "-n", loop.namespace, "--wait=true")

    def gone() -> bool:
        pods = loop.kube.get_json(
            "pods", "-n", loop.namespace, "-l", f"llm.modelserve.io/modelserve={name}"
        )
        alive = [pid for pid in running if Path(f"/proc/{pid}").exists()]
        return not pods["items"] and not alive

    wait_for(gone, timeout=90, what=f"the pods and processes of {name} to go")
