"""Data generation's pure parts: ROUGE-L and the near-duplicate pool, the prompt and the
parsing of a model's answer, seed sets, paths a caller may use, item sampling, shard
assembly in item order (in a thread and in a process) and what resuming a job adds."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

import pytest

from modelserve.jobs.datagen.examples import Example, parse, prompt, stop_words
from modelserve.jobs.datagen.plan import (
    MAX_ITEMS,
    DataGenSpec,
    PathRefused,
    ResumeRefused,
    item_count,
    item_inputs,
    items_to_add,
    resolve_key,
    sample_examples,
    shard_key,
)
from modelserve.jobs.datagen.runner import IN_THREAD_UP_TO, select_off_loop
from modelserve.jobs.datagen.seeds import BadSeeds, default_seeds, parse_seed_lines
from modelserve.jobs.datagen.shards import Assembler, chunks, select
from modelserve.jobs.datagen.similarity import (
    InstructionPool,
    lcs_length,
    rouge_l,
    tokens,
    word_order,
)
from modelserve.jobs.datagen.views import view
from modelserve.jobs.store import Job


def ex(instruction: str, output: str = "an answer", input: str = "") -> Example:
    return Example(instruction=instruction, input=input, output=output)


# --- similarity ---------------------------------------------------------------------------


def test_tokens_are_lower_cased_words_and_numbers() -> None:
    assert tokens("Add 17 and 25, then DOUBLE it!") == [
        "add",
        "17",
        "and",
        "25",
        "then",
        "double",
        "it",
    ]


def test_lcs_and_rouge_l_by_hand() -> None:
    a = tokens("the cat sat on the mat")
    b = tokens("the cat lay on a mat")
    # LCS: the cat on mat
    assert lcs_length(a, b) == 4
    assert rouge_l(a, b) == pytest.approx(2 * 4 / 12)
    assert rouge_l(a, a) == 1.0
    assert rouge_l(a, []) == 0.0
    # Order matters: the same four words (a set overlap of 1.0), an LCS of two.
    forward = tokens("convert celsius to fahrenheit")
    backward = tokens("convert fahrenheit to celsius")
    assert rouge_l(forward, backward) == pytest.approx(2 * 2 / 8)


def test_pool_refuses_near_duplicates_and_keeps_different_ones() -> None:
    pool = InstructionPool(0.7)
    assert pool.admit("Convert the fraction to a decimal number.")
    assert not pool.admit("Convert the fraction into a decimal number.")
    assert not pool.admit("convert THE fraction to a decimal number")
    assert pool.admit("Write a haiku about autumn leaves.")
    assert len(pool) == 2
    assert pool.most_similar("Write a haiku about autumn leaves") == 1.0
    assert pool.most_similar("List three prime numbers.") < 0.7


def test_pool_threshold_is_the_boundary() -> None:
    # 2*LCS/(|a|+|b|) = 2*3/(4+4) = 0.75
    pool = InstructionPool(0.75)
    pool.add("alpha beta gamma delta")
    assert not pool.admit("alpha beta gamma omega")
    looser = InstructionPool(0.76)
    looser.add("alpha beta gamma delta")
    assert looser.admit("alpha beta gamma omega")


def test_pool_finds_what_comparing_every_pair_finds() -> None:
    # Its index only skips pairs that cannot reach the threshold: the same instructions
    # are kept as by comparing each with every one kept before it.
    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(60)] + ["the", "a", "of", "number"] * 10
    texts: list[str] = []
    for _ in range(300):
        if texts and rng.random() < 0.4:
            words = rng.choice(texts).split()
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choices(vocabulary, k=rng.randint(2, 12))))
    for threshold in (0.3, 0.5, 0.7, 0.9, 1.0):
        brute: list[str] = []
        for text in texts:
            if all(rouge_l(tokens(text), tokens(other)) < threshold for other in brute):
                brute.append(text)
        assert 0 < len(brute) < len(texts)
        # Any fixed word order is exact: none (words by themselves), rarest first, and
        # the commonest first (the prefixes then hold the commonest words).
        counts = word_order(texts)
        for order in (None, counts, {element: -n for element, n in counts.items()}):
            pool = InstructionPool(threshold, order)
            assert [text for text in texts if pool.admit(text)] == brute


# --- prompt and parsing -------------------------------------------------------------------


def test_prompt_lists_the_tasks_and_ends_where_the_model_writes() -> None:
    shown = [ex("Add the numbers.", "42", "17 and 25"), ex("Name a colour.", "blue")]
    text = prompt(shown, "math")
    assert text.startswith("Below are tasks about math.")
    assert "Task 1\nInstruction: Add the numbers.\nInput: 17 and 25\nOutput: 42\n" in text
    assert "Task 2\nInstruction: Name a colour.\nInput: <noinput>\nOutput: blue\n" in text
    assert text.endswith("Task 3\nInstruction:")
    assert stop_words(shown) == ["\nTask 4"]


def test_parse_a_whole_task() -> None:
    parsed = parse(
        " Find the area of a square.\nInput: side 10\nOutput: 100\n", finish_reason="stop"
    )
    assert parsed.rejected is None
    assert parsed.example == Example(
        instruction="Find the area of a square.", input="side 10", output="100"
    )
    assert parse(
        " Name three even numbers.\nInput: <noinput>\nOutput: 2, 4, 6", finish_reason="stop"
    ).example == ex("Name three even numbers.", "2, 4, 6")
    # SmolLM2 sometimes writes the output on the input's line.
    inline = parse(
        " Calculate the factorial of a number.\nInput: 5 Output: 120", finish_reason="stop"
    )
    assert inline.example == ex("Calculate the factorial of a number.", "120", "5")
    # What follows the output's end, when the model goes on with more fields, is not kept.
    went_on = parse(
        " Convert the number to Roman numerals.\nInput: 1999\nOutput: MCMXCIX\nOutput: more",
        finish_reason="stop",
    )
    assert went_on.example == ex("Convert the number to Roman numerals.", "MCMXCIX", "1999")


@pytest.mark.parametrize(
    ("text", "finish_reason", "why"),
    [
        (" Find all primes below 10.\nInput: All primes!", "stop", "unparsable"),
        (" Find all primes below 10.\nOutput: 2, 3, 5, 7 and", "length", "truncated"),
        ("\nInput: x\nOutput: y", "stop", "empty"),
        (" Add them.\nOutput: ", "stop", "empty"),
        (" Build a tower of blocks.\nOutput: no output", "stop", "empty"),
        (" Add them.\nOutput: 3", "stop", "too_short"),
        (" " + "word " * 151 + "\nOutput: yes", "stop", "too_long"),
        (" - Add the two numbers.\nOutput: 3", "stop", "malformed"),
        (" Describe the image in two sentences.\nOutput: A cat.", "stop", "unsuitable"),
        (" Plot the sales for each month.\nOutput: done", "stop", "unsuitable"),
        (
            " Tell me how to pick a lock.\nOutput: I'm sorry, but I can't help with that.",
            "stop",
            "refusal",
        ),
        (" Write a poem about war.\nOutput: As an AI, I do not write poems.", "stop", "refusal"),
    ],
)
def test_parse_rejects(text: str, finish_reason: str, why: str) -> None:
    parsed = parse(text, finish_reason=finish_reason)
    assert (parsed.example, parsed.rejected) == (None, why)
    assert parsed.as_output() == {"example": None, "rejected": why}


# --- seeds --------------------------------------------------------------------------------


def test_the_default_seed_set_is_varied_and_distinct() -> None:
    seeds = default_seeds()
    assert 12 <= len(seeds) <= 20
    pool = InstructionPool(0.7)
    assert all(pool.admit(seed.instruction) for seed in seeds)
    assert all(seed.output for seed in seeds)


def test_seed_lines() -> None:
    seeds = parse_seed_lines(
        [
            '{"instruction": "Add them.", "input": "1, 2", "output": "3"}',
            "",
            '{"instruction": "Say hi.", "output": "hi"}',
        ]
    )
    assert seeds == [ex("Add them.", "3", "1, 2"), ex("Say hi.", "hi")]
    with pytest.raises(BadSeeds, match="line 2 is not JSON"):
        parse_seed_lines(['{"instruction": "a", "output": "b"}', "{oops"])
    with pytest.raises(BadSeeds, match="line 1: output"):
        parse_seed_lines(['{"instruction": "a"}'])
    with pytest.raises(BadSeeds, match="line 1: a seed task is an object"):
        parse_seed_lines(['"just a string"'])
    with pytest.raises(BadSeeds, match="empty"):
        parse_seed_lines(["", " "])


# --- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "is_admin", "key"),
    [
        ("train_shards_out", False, "datagen/alice/train_shards_out"),
        ("math/run-1/", False, "datagen/alice/math/run-1"),
        ("/datagen/alice/x", False, "datagen/alice/x"),
        ("s3://platform/datagen/alice/x", False, "datagen/alice/x"),
        ("/datagen/bob/x", True, "datagen/bob/x"),
        ("/shared/corpora/v1", True, "shared/corpora/v1"),
        ("train_shards_out", True, "datagen/alice/train_shards_out"),
    ],
)
def test_paths_a_caller_may_use(path: str, is_admin: bool, key: str) -> None:
    assert resolve_key(path, user="alice", is_admin=is_admin, bucket="platform") == key


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/datagen/bob/x", 403, "path_forbidden"),
        ("/datagen/alice", 403, "path_forbidden"),
        ("/models/smollm2", 403, "path_forbidden"),
        ("s3://platform/datagen/bob/x", 403, "path_forbidden"),
        ("s3://other-bucket/datagen/alice/x", 400, "wrong_bucket"),
        ("../bob/x", 400, "invalid_path"),
        ("a/./b", 400, "invalid_path"),
        ("a//b", 400, "invalid_path"),
        ("a b", 400, "invalid_path"),
        ("/", 400, "invalid_path"),
    ],
)
def test_paths_refused(path: str, status: int, code: str) -> None:
    with pytest.raises(PathRefused) as refused:
        resolve_key(path, user="alice", is_admin=False, bucket="platform")
    assert (refused.value.status, refused.value.code) == (status, code)


# --- items --------------------------------------------------------------------------------


def test_item_count_over_generates() -> None:
    assert item_count(10, 2.0) == 20
    assert item_count(7, 1.5) == 11
    assert item_count(1, 1.0) == 1
    assert item_count(0, 2.0) == 0


def test_sampling_mixes_seeds_and_the_jobs_own_examples() -> None:
    seeds = [ex(f"seed task number {i}") for i in range(10)]
    generated = [ex(f"generated task number {i}") for i in range(10)]
    rng = random.Random(1)
    only_seeds = sample_examples(seeds, [], 3, rng)
    assert len(only_seeds) == 3 and set(e.instruction for e in only_seeds) <= {
        s.instruction for s in seeds
    }
    assert len({e.instruction for e in only_seeds}) == 3
    mixed = sample_examples(seeds, generated, 8, rng)
    assert sum(e in generated for e in mixed) == 2 and sum(e in seeds for e in mixed) == 6
    small = sample_examples(seeds[:2], [], 5, rng)
    assert len(small) == 2
    inputs = list(item_inputs(seeds, [], count=4, k=3, rng=random.Random(7)))
    assert inputs == list(item_inputs(seeds, [], count=4, k=3, rng=random.Random(7)))
    assert len(inputs) == 4 and all(len(i["examples"]) == 3 for i in inputs)


# --- assembly -----------------------------------------------------------------------------


def done(example: Example | None, rejected: str | None = None) -> dict[str, Any]:
    output = {
        "example": example.model_dump() if example else None,
        "rejected": rejected,
        "text": "",
    }
    return {"state": "done", "output": output}


def test_assembly_keeps_item_order_drops_duplicates_and_stops_at_num_examples() -> None:
    seeds = [ex("Add the two numbers and give the sum.")]
    assembler = Assembler(seeds, num_examples=3, threshold=0.7)
    outcomes: list[dict[str, Any]] = [
        done(ex("Add the two numbers and give the sum")),  # a seed's copy
        done(ex("Write a limerick about a cat.")),
        {"state": "failed", "output": None},
        done(None, "refusal"),
        done(ex("Write a limerick about a cat!")),  # near duplicate of a kept one
        done(ex("Name the capital city of France.")),
        done(None, "truncated"),
        done(ex("List three fruits that are red.")),
        done(ex("Explain what gravity does to falling objects.")),  # past num_examples
    ]
    for outcome in outcomes:
        assembler.offer(outcome)
    assert assembler.kept == []  # nothing is kept before `select`
    assembler.settle(select(assembler.seeds, assembler.instructions(), 0.7, 3))
    assert [e.instruction for e in assembler.kept] == [
        "Write a limerick about a cat.",
        "Name the capital city of France.",
        "List three fruits that are red.",
    ]
    assert dict(assembler.rejected) == {"near_duplicate": 2, "refusal": 1, "truncated": 1}
    assert assembler.items_failed == 1 and assembler.surplus == 1


def test_selection_off_the_loop_in_a_thread_and_in_a_process() -> None:
    # The finisher's selection runs in a thread for a few instructions and in a spawned
    # process beyond IN_THREAD_UP_TO: both answer what `select` answers here.
    rng = random.Random(5)
    vocabulary = [f"w{i}" for i in range(400)] + ["the", "a", "of"] * 30
    made = [" ".join(rng.choices(vocabulary, k=rng.randint(3, 10))) for _ in range(2500)]
    texts = made[:300] + made  # 300 copies: near duplicates for sure
    seeds = ["the w1 of w2 and w3"]
    for instructions, limit in ((texts[:30] * 2, 40), (texts, 2000), (texts, 10**6)):
        expected = select(seeds, instructions, 0.7, limit)
        got = asyncio.run(select_off_loop(seeds, instructions, 0.7, limit))
        assert got == expected
        assert len(got.kept) <= limit and got.near_duplicates > 0
    assert len(texts) > IN_THREAD_UP_TO
    assert expected.examined == len(texts) and expected.near_duplicates >= 300


def test_shards_split_the_examples() -> None:
    examples = [ex(f"task {i} of the list") for i in range(7)]
    assert [len(c) for c in chunks(examples, 3)] == [3, 3, 1]
    assert [len(c) for c in chunks(examples, 10)] == [7]
    assert list(chunks([], 3)) == []
    assert shard_key("datagen/alice/out", 12) == "datagen/alice/out/shard-00012.jsonl"


# --- resume -------------------------------------------------------------------------------


def spec(num_examples: int = 10, overgenerate: float = 2.0) -> DataGenSpec:
    return DataGenSpec(
        strategy="self_instruct",
        num_examples=num_examples,
        domain=None,
        output_dir="out",
        output_key="datagen/alice/out",
        output_uri="s3://platform/datagen/alice/out",
        shard_size=100,
        overgenerate=overgenerate,
        similarity_threshold=0.7,
        examples_per_prompt=3,
        max_tokens=64,
        temperature=1.0,
        seed_source="default",
        seeds=[ex("Add the numbers.")],
    )


def test_resume_adds_what_the_missing_examples_need() -> None:
    # Short by 4: 8 items, none left to run.
    assert (
        items_to_add(status="done", result={"examples": 6}, spec=spec(), open_items=0, total=20)
        == 8
    )
    # Cancelled with 5 items never run: 3 more.
    assert (
        items_to_add(
            status="cancelled", result={"examples": 6}, spec=spec(), open_items=5, total=20
        )
        == 3
    )
    # Cancelled with plenty left: none added, they run again.
    assert (
        items_to_add(
            status="cancelled", result={"examples": 2}, spec=spec(), open_items=30, total=40
        )
        == 0
    )
    # Every item failed (the gateway was down): all of them again.
    assert (
        items_to_add(status="failed", result={"examples": 0}, spec=spec(), open_items=0, total=20)
        == 20
    )


def test_resume_keeps_a_job_within_max_items() -> None:
    # 8 items wanted, room for 5: 5; no room and nothing left to run: refused; no room
    # but items left to run: they run again.
    near = MAX_ITEMS - 5
    assert (
        items_to_add(status="done", result={"examples": 6}, spec=spec(), open_items=0, total=near)
        == 5
    )
    with pytest.raises(ResumeRefused) as refused:
        items_to_add(
            status="done", result={"examples": 6}, spec=spec(), open_items=0, total=MAX_ITEMS
        )
    assert refused.value.code == "too_many_items"
    assert (
        items_to_add(
            status="cancelled", result={"examples": 6}, spec=spec(), open_items=2, total=MAX_ITEMS
        )
        == 0
    )


@pytest.mark.parametrize(
    ("status", "result", "code"),
    [
        ("running", None, "job_running"),
        ("pending", None, "job_running"),
        ("done", None, "job_finishing"),
        ("done", {"examples": 10}, "job_complete"),
        ("cancelled", {"examples": 12}, "job_complete"),
    ],
)
def test_resume_refused(status: str, result: dict[str, int] | None, code: str) -> None:
    with pytest.raises(ResumeRefused) as refused:
        items_to_add(status=status, result=result, spec=spec(), open_items=0, total=20)
    assert refused.value.code == code


# --- the job as the routes show it ----------------------------------------------------------


def test_view_of_a_finished_job() -> None:
    started = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
    shard = {
        "name": "shard-00000.jsonl",
        "key": "datagen/alice/out/shard-00000.jsonl",
        "uri": "s3://platform/datagen/alice/out/shard-00000.jsonl",
        "examples": 2,
        "bytes": 120,
    }
    job = Job(
        id="datagen_1",
        type="data_gen",
        owner="alice",
        team=None,
        model="smollm2",
        status="done",
        total=4,
        done=3,
        failed=1,
        created_at=started,
        started_at=started,
        finished_at=started + dt.timedelta(seconds=8),
        error=None,
        spec=spec(num_examples=2).model_dump(),
        result={
            "examples": 2,
            "short": False,
            "shards": [shard],
            "rejected": {"truncated": 1},
            "items_failed": 1,
            "surplus": 0,
        },
    )
    shown = view(job, started + dt.timedelta(seconds=60))
    assert shown.job_id == "datagen_1" and shown.model_id == "smollm2"
    assert shown.strategy == "self_instruct" and shown.status == "done"
    assert shown.config["num_examples"] == 2 and shown.config["output_dir"] == "out"
    assert "seeds" not in shown.config and "output_key" not in shown.config
    assert shown.seed_set.model_dump() == {"source": "default", "count": 1}
    assert shown.output_uri == "s3://platform/datagen/alice/out"
    assert [s.model_dump() for s in shown.shards] == [shard]
    assert (shown.examples, shown.short, shown.items_failed) == (2, False, 1)
    assert shown.rejected == {"truncated": 1}
    assert shown.progress.fraction == 1.0 and shown.progress.rate == pytest.approx(0.5)
    running = view(job.model_copy(update={"status": "running", "result": None}), started)
    assert running.examples is None and running.shards == [] and running.rejected == {}
