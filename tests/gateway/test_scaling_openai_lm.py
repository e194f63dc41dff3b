"""The OpenAI-style language model over a fake upstream: requests made, answers read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelserve.common.modelserve import Runtime
from modelserve.gateway.scaling.lm import Prompt, Usage
from modelserve.gateway.scaling.openai_lm import (
    Continuation,
    MalformedAnswer,
    OpenAIChatLM,
    chatml,
    parse_answer,
)

PROMPT = Prompt.of(
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]
)


def chat_answer(texts: list[str], *, prompt_tokens: int = 11, **choice: Any) -> dict[str, Any]:
    return {
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, **choice}
            for i, text in enumerate(texts)
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 3 * len(texts)},
    }


class RecordingPost:
    """Answers each request with as many samples as it asked for, noting the requests
    and how many were in flight at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._delay = delay

    async def __call__(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append((path, body))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self._delay)
        finally:
            self.in_flight -= 1
        n = body.get("n", 1)
        return chat_answer(
            [f"sample {len(self.requests)}.{i}" for i in range(n)], finish_reason="stop"
        )


def test_a_server_with_n_gets_one_request() -> None:
    post = RecordingPost()
    lm = OpenAIChatLM(post, model="qwen", supports_n=True)
    generated = asyncio.run(lm.generate(PROMPT, n=4, max_tokens=20, temperature=0.7))
    assert len(post.requests) == 1
    path, body = post.requests[0]
    assert path == "/v1/chat/completions"
    assert body["n"] == 4
    assert body["max_tokens"] == 20
    assert body["temperature"] == 0.7
    assert body["stream"] is False
    assert body["messages"] == list(PROMPT.messages)
    assert len(generated.samples) == 4
    assert generated.usage == Usage(1, 11, 12)


def test_a_server_without_n_gets_n_requests_bounded_and_usage_summed() -> None:
    post = RecordingPost(delay=0.01)
    lm = OpenAIChatLM(post, model="smol", supports_n=False, max_concurrency=3)
    generated = asyncio.run(lm.generate(PROMPT, n=7))
    assert len(post.requests) == 7
    assert all("n" not in body for _, body in post.requests)
    assert post.most_in_flight == 3
    assert len(generated.samples) == 7
    assert generated.usage == Usage(7, 77, 21)
    # A sample alone in its request knows its own token count.
    assert {sample.completion_tokens for sample in generated.samples} == {3}


def test_the_bound_holds_across_concurrent_generate_calls() -> None:
    post = RecordingPost(delay=0.01)
    lm = OpenAIChatLM(post, model="smol", supports_n=False, max_concurrency=2)

    async def both() -> None:
        await asyncio.gather(lm.generate(PROMPT, n=3), lm.generate(PROMPT.continued("x"), n=3))

    asyncio.run(both())
    assert len(post.requests) == 6
    assert post.most_in_flight == 2


def test_n_requests_get_different_seeds() -> None:
    post = RecordingPost()
    lm = OpenAIChatLM(post, model="smol", supports_n=False, sampling={"seed": 40, "top_p": 0.9})
    asyncio.run(lm.generate(PROMPT, n=3))
    assert sorted(body["seed"] for _, body in post.requests) == [40, 41, 42]
    assert all(body["top_p"] == 0.9 for _, body in post.requests)


def test_the_clients_sampling_cannot_override_ours() -> None:
    post = RecordingPost()
    sampling = {"stream": True, "n": 9, "model": "other", "top_k": 20, "logprobs": True}
    # llama.cpp's own: a length read before max_tokens, probabilities instead of logprobs.
    sampling |= {"n_predict": -1, "post_sampling_probs": True}
    lm = OpenAIChatLM(post, model="smol", supports_n=True, sampling=sampling)
    asyncio.run(lm.generate(PROMPT, n=2))
    _, body = post.requests[0]
    assert body["stream"] is False
    assert body["n"] == 2
    assert body["model"] == "smol"
    assert body["top_k"] == 20
    assert "logprobs" not in body
    assert "n_predict" not in body and "post_sampling_probs" not in body


def test_vllm_continues_the_final_message_with_its_flags() -> None:
    post = RecordingPost()
    lm = OpenAIChatLM.for_runtime(post, model="qwen", runtime=Runtime.VLLM)
    assert lm.supports_n
    asyncio.run(lm.generate(PROMPT.continued("Step 1: add.\n\n"), n=2, stop=["\n\n"]))
    _, body = post.requests[0]
    assert body["messages"][-1] == {"role": "assistant", "content": "Step 1: add.\n\n"}
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert body["stop"] == ["\n\n"]


def test_llamacpp_gets_the_prefix_as_a_trailing_assistant_message() -> None:
    post = RecordingPost()
    lm = OpenAIChatLM.for_runtime(post, model="smol", runtime=Runtime.LLAMACPP)
    assert not lm.supports_n
    assert lm.continuation is Continuation.PREFILL
    asyncio.run(lm.generate(PROMPT.continued("Step 1"), n=1))
    _, body = post.requests[0]
    assert body["messages"][-1] == {"role": "assistant", "content": "Step 1"}
    assert "continue_final_message" not in body


def test_a_template_continues_through_text_completions() -> None:
    post = RecordingPost()
    lm = OpenAIChatLM(
        post, model="smol", supports_n=False, continuation=Continuation.TEMPLATE, template=chatml
    )
    asyncio.run(lm.generate(PROMPT, n=1, logprobs=True))
    asyncio.run(lm.generate(PROMPT.continued("Step 1"), n=1, logprobs=True))
    (first_path, first), (second_path, second) = post.requests
    # Without a prefix, the chat endpoint and the server's own template.
    assert first_path == "/v1/chat/completions"
    assert first["logprobs"] is True
    assert second_path == "/v1/completions"
    assert second["prompt"] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
        "<|im_start|>assistant\nStep 1"
    )
    assert second["logprobs"] == 1
    with pytest.raises(ValueError, match="template"):
        OpenAIChatLM(post, model="smol", supports_n=False, continuation=Continuation.TEMPLATE)


def test_chatml_adds_a_default_system_message_only_where_there_is_none() -> None:
    user = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert chatml(user, default_system="S").startswith("<|im_start|>system\nS<|im_end|>\n")
    assert chatml(PROMPT.messages, default_system="S").count("system") == 1
    assert "<|im_start|>user\nHi<|im_end|>" in chatml(user)


def test_reading_vllm_answers_tells_an_end_from_a_stop_sequence() -> None:
    answer = {
        "choices": [
            {
                "index": 1,
                "message": {"content": "b"},
                "finish_reason": "stop",
                "stop_reason": "\n\n",
            },
            {"index": 0, "message": {"content": "a"}, "finish_reason": "stop", "stop_reason": None},
            {
                "index": 2,
                "message": {"content": "c"},
                "finish_reason": "length",
                "stop_reason": None,
            },
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9},
    }
    samples = parse_answer(answer, stopped_by_strings=True).samples
    assert [s.text for s in samples] == ["a", "b", "c"]
    assert [s.eos for s in samples] == [True, False, False]
    assert [s.stop_sequence for s in samples] == [None, "\n\n", None]
    # Several samples in one request: none knows its own count.
    assert {s.completion_tokens for s in samples} == {None}


def test_reading_llamacpp_answers_leaves_an_end_unknown() -> None:
    answer = chat_answer(["a"], finish_reason="stop")
    assert parse_answer(answer, stopped_by_strings=True).samples[0].eos is None
    # Without stop strings, only the model can have stopped it.
    assert parse_answer(answer, stopped_by_strings=False).samples[0].eos is True


def test_reading_logprobs_of_chat_and_text_completions() -> None:
    chat = chat_answer(
        ["ab"],
        logprobs={"content": [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -1.5}]},
    )
    assert parse_answer(chat, stopped_by_strings=False).samples[0].token_logprobs == (-0.5, -1.5)
    text = {"choices": [{"index": 0, "text": "ab", "logprobs": {"token_logprobs": [-0.25, -0.75]}}]}
    sample = parse_answer(text, stopped_by_strings=False).samples[0]
    assert sample.text == "ab"
    assert sample.token_logprobs == (-0.25, -0.75)
    assert sample.completion_tokens == 2
    assert (
        parse_answer(chat_answer(["x"]), stopped_by_strings=False).samples[0].token_logprobs is None
    )
    # llama.cpp's post-sampling probabilities: their logs.
    probs = chat_answer(["ab"], logprobs={"content": [{"token": "a", "prob": 0.5}]})
    (logprob,) = parse_answer(probs, stopped_by_strings=False).samples[0].token_logprobs or ()
    assert logprob == pytest.approx(-0.6931, abs=1e-4)


def test_malformed_answers() -> None:
    with pytest.raises(MalformedAnswer, match="no choices"):
        parse_answer({"choices": []}, stopped_by_strings=False)
    with pytest.raises(MalformedAnswer):
        parse_answer({"choices": [{"index": "first"}]}, stopped_by_strings=False)
    for token in ({"token": "a"}, {"token": "a", "logprob": "low"}, "a", {"prob": 0}):
        broken = chat_answer(["a"], logprobs={"content": [token]})
        with pytest.raises(MalformedAnswer, match="no logprob"):
            parse_answer(broken, stopped_by_strings=False)

    async def one_sample(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return chat_answer(["only one"])

    lm = OpenAIChatLM(one_sample, model="m", supports_n=True)
    with pytest.raises(MalformedAnswer, match="support n"):
        asyncio.run(lm.generate(PROMPT, n=3))
