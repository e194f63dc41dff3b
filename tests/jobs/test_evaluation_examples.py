"""The pure parts of evaluation jobs: dataset references, example lines, judging an
answer and the summary."""

from __future__ import annotations

from typing import Any

import pytest

from modelserve.jobs.evaluation.datasets import DatasetRefused, dataset_key
from modelserve.jobs.evaluation.examples import (
    BadExample,
    EvalSpec,
    judge,
    parse_example,
    request_body,
)
from modelserve.jobs.evaluation.results import Tally, example_record

BUCKET = "inference-models"


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        ("math_eval.jsonl", "datasets/math_eval.jsonl"),
        ("datasets/math_eval.jsonl", "datasets/math_eval.jsonl"),
        ("math/v2.jsonl", "datasets/math/v2.jsonl"),
        (f"s3://{BUCKET}/datasets/a.jsonl", "datasets/a.jsonl"),
    ],
)
def test_dataset_refs_name_keys_under_datasets(ref: str, key: str) -> None:
    assert dataset_key(ref, bucket=BUCKET, admin=False) == key


@pytest.mark.parametrize(
    "ref",
    [
        "s3://elsewhere/datasets/a.jsonl",
        "https://example.com/a.jsonl",
        f"s3://{BUCKET}/jobs/job_1/output.jsonl",
        "datasets/../jobs/x.jsonl",
        "a//b.jsonl",
        f"s3://{BUCKET}/",
    ],
)
def test_refs_out_of_reach_are_refused(ref: str) -> None:
    with pytest.raises(DatasetRefused):
        dataset_key(ref, bucket=BUCKET, admin=False)


def test_admins_may_name_any_key_of_the_bucket() -> None:
    key = dataset_key(f"s3://{BUCKET}/jobs/j/examples.jsonl", bucket=BUCKET, admin=True)
    assert key == "jobs/j/examples.jsonl"
    with pytest.raises(DatasetRefused):
        dataset_key("s3://elsewhere/x.jsonl", bucket=BUCKET, admin=True)


def test_example_lines() -> None:
    asked = parse_example('{"id": 7, "question": "What is 1,000 + 1?", "answer": "1,001"}')
    assert asked.messages == [{"role": "user", "content": "What is 1,000 + 1?"}]
    assert (asked.expected, asked.id) == ("1001", 7)
    assert parse_example('{"prompt": "p", "answer": 3.0}').expected == "3"
    chat = parse_example(
        '{"messages": [{"role": "system", "content": "Be brief."},'
        ' {"role": "user", "content": "2+2?"}], "answer": 4, "extra": 1}'
    )
    assert [m["role"] for m in chat.messages] == ["system", "user"]
    for line, reason in [
        ("{", "not JSON"),
        ('"text"', "must be a JSON object"),
        ('{"prompt": "p"}', "needs an `answer`"),
        ('{"prompt": "p", "answer": true}', "needs an `answer`"),
        ('{"prompt": "p", "answer": " $ "}', "is empty"),
        ('{"answer": 1}', "needs a `prompt`"),
        ('{"messages": [], "answer": 1}', "non-empty list"),
        ('{"messages": [{"role": "user"}], "answer": 1}', "string `role` and `content`"),
    ]:
        with pytest.raises(BadExample, match=reason):
            parse_example(line)


def spec(**changes: Any) -> EvalSpec:
    values: dict[str, Any] = {
        "name": "n",
        "dataset_ref": "d.jsonl",
        "dataset": "s3://b/datasets/d.jsonl",
        "metrics": ["accuracy"],
        "max_samples": None,
        "per_example_logging": True,
        "max_tokens": 16,
        "temperature": 0.0,
    }
    return EvalSpec(**{**values, **changes})


def test_request_bodies_ask_for_logprobs_and_a_trace_only_when_scaled() -> None:
    example = parse_example('{"prompt": "p", "answer": 1}')
    plain = request_body(example, "m", spec())
    assert plain["logprobs"] is True and plain["top_logprobs"] == 1
    assert "budget" not in plain and "scaling_trace" not in plain
    # Asked not to scale (a budget of 1, or `none` under any budget): log-probabilities,
    # never the scaling fields beside them, and `none` so the model's defaults do not scale.
    for unscaled in (spec(budget=1, algorithm="none"), spec(budget=4, algorithm="none")):
        one = request_body(example, "m", unscaled)
        assert one["algorithm"] == "none" and "budget" not in one and "scaling_trace" not in one
        assert one["logprobs"] is True
    one = request_body(example, "m", spec(budget=1, algorithm="best-of-n"))
    assert one["algorithm"] == "none" and one["logprobs"] is True and "budget" not in one
    scaled = request_body(example, "m", spec(budget=2, algorithm="self-consistency"))
    assert scaled["scaling_trace"] is True
    # Log-probabilities would have the gateway answer it unscaled.
    assert "logprobs" not in scaled and "top_logprobs" not in scaled


def answer(text: str, logprobs: list[float] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"message": {"content": text}}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "t", "logprob": v} for v in logprobs]}
    return {"choices": [choice]}


def test_judging_extracts_compares_and_measures_the_loss() -> None:
    example = parse_example('{"prompt": "p", "answer": "42"}')
    right = judge(example, answer("It is 40 + 2 = 42.", [-0.5, -1.5, 0.0]), None)
    assert right["answer"] == "42" and right["correct"] is True
    assert right["loss"] == pytest.approx(2.0 / 3) and right["tokens"] == 3
    wrong = judge(example, answer("\\boxed{41} not 42"), None)
    assert (wrong["answer"], wrong["correct"], wrong["loss"]) == ("41", False, None)
    patterned = judge(example, answer("ANSWER: 42 (or 7)"), r"ANSWER: (\d+)")
    assert patterned["correct"] is True
    assert judge(example, answer("no number"), None)["answer"] is None
    with pytest.raises(BadExample):
        judge(example, {"choices": []}, None)


def test_the_summary_counts_samples_apart_from_failures() -> None:
    def made(index: int, line: int, output: Any, error: Any = None) -> dict[str, Any]:
        state = "failed" if error else "done"
        return {
            "index": index,
            "state": state,
            "input": {"line": line},
            "output": output,
            "error": error,
        }

    rows = [
        made(0, 1, {"correct": True, "loss": 1.0}),
        made(1, 2, {"correct": False, "loss": 3.0}),
        made(2, 4, {"correct": True, "loss": None}),
        made(3, 5, None, {"code": "invalid_example"}),
    ]
    tally = Tally()
    for row in rows:
        tally.add(example_record(row))
    assert example_record(rows[3]) == {"index": 3, "line": 5, "error": {"code": "invalid_example"}}
    assert tally.result() == {
        "accuracy": 2 / 3,
        "total_samples": 3,
        "correct": 2,
        "failed": 1,
        "avg_loss": 2.0,
        "loss_samples": 2,
    }
    assert Tally().result()["accuracy"] is None
