"""SmolLM2-135M on llama-cpp-python's server answers like an OpenAI-compatible server."""

from __future__ import annotations

import httpx

from modelserve.testbed.llm import LlmServer


def test_chat_completion_answers_with_real_tokens(llm: LlmServer) -> None:
    response = httpx.post(
        f"{llm.url}/chat/completions",
        json={
            "model": llm.alias,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 16,
            "temperature": 0,
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    answer = body["choices"][0]["message"]["content"]
    assert answer.strip()
    assert body["usage"]["completion_tokens"] > 0
    assert body["model"] == llm.alias


def test_completion_returns_logprobs(llm: LlmServer) -> None:
    response = httpx.post(
        f"{llm.url}/completions",
        json={
            "model": llm.alias,
            "prompt": "1, 2, 3,",
            "max_tokens": 4,
            "temperature": 0,
            "logprobs": 2,
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    logprobs = response.json()["choices"][0]["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) > 0
    assert all(value <= 0 for value in logprobs["token_logprobs"] if value is not None)


def test_n_above_one_is_ignored(llm: LlmServer) -> None:
    """llama-cpp-python's server answers one choice whatever `n` says: callers that need
    several samples (best-of-N, self-consistency) must send several requests."""
    response = httpx.post(
        f"{llm.url}/chat/completions",
        json={
            "model": llm.alias,
            "messages": [{"role": "user", "content": "Say a colour."}],
            "max_tokens": 4,
            "n": 3,
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["choices"]) == 1
