"""What Self-Instruct makes: an example for the trainer (`instruction`, `input`, `output`,
one JSON object per line of a shard), the prompt that asks a model for one more, and the
filters that decide whether its answer is one.

The prompt is the paper's instruction-generation prompt (a few tasks, then the start of
the next one for the model to continue) with each task's input and output written
after it, so one completion gives a whole example (as Alpaca did) instead of the paper's
second round of instance generation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

NO_INPUT = "<noinput>"
MIN_INSTRUCTION_WORDS = 3
MAX_INSTRUCTION_WORDS = 150
MAX_FIELD_CHARS = 4000

# Tasks a text model cannot do (the paper's filter, as its code and Alpaca's list them).
_UNSUITABLE = re.compile(
    r"\b(image|images|graph|graphs|picture|pictures|file|files|map|maps|draw|plot|go to|"
    r"video|audio|music|flowchart|diagram)\b",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i can not|i am unable|"
    r"i'?m unable|i am not able|i'?m not able|as an ai|as a language model|i apologi[sz]e)",
    re.IGNORECASE,
)
_INPUT = re.compile(r"\bInput\s*:", re.IGNORECASE)
_OUTPUT = re.compile(r"\bOutput\s*:", re.IGNORECASE)
# A field starting a line of the output: the model went on past its task's end.
_NEXT_FIELD = re.compile(r"^\s*(Instruction|Input|Output)\s*:", re.IGNORECASE | re.MULTILINE)
_NOTHING = ("none", "n/a", "<noinput>", "<no input>", "no input", "<nooutput>", "no output")


class Example(BaseModel):
    """One line of a shard, in the trainer's format."""

    instruction: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)
    input: str = Field(default="", max_length=MAX_FIELD_CHARS)
    output: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)


def prompt(examples: Sequence[Example], domain: str | None) -> str:
    """The completion prompt: the examples as tasks 1..k, then `Task k+1` and
    `Instruction:` for the model to continue."""
    about = f" about {domain}" if domain else ""
    lines = [
        f"Below are tasks{about}. Each task has an instruction, an optional input and a "
        f"correct output. Write one more task{about}, different from the ones above.",
        "",
    ]
    for number, example in enumerate(examples, start=1):
        lines += [
            f"Task {number}",
            f"Instruction: {_one_line(example.instruction)}",
            f"Input: {_one_line(example.input) or NO_INPUT}",
            f"Output: {example.output.strip()}",
            "",
        ]
    lines += [f"Task {len(examples) + 1}", "Instruction:"]
    return "\n".join(lines)


def stop_words(examples: Sequence[Example]) -> list[str]:
    """Where the model's new task ends: when it starts the one after it."""
    return [f"\nTask {len(examples) + 2}"]


@dataclass(frozen=True)
class Parsed:
    example: Example | None
    rejected: str | None  # why it is not an example

    def as_output(self) -> dict[str, Any]:
        return {
            "example": self.example.model_dump() if self.example else None,
            "rejected": self.rejected,
        }


def parse(text: str, *, finish_reason: str | None) -> Parsed:
    """The example in a completion of `prompt`, or why there is none: `truncated` (cut at
    max_tokens), `unparsable` (no output), `empty`, `too_short`/`too_long`, `unsuitable`
    (needs images, files, audio…), `malformed` (an instruction that starts with neither a
    letter nor a digit) or `refusal`."""
    if finish_reason == "length":
        return Parsed(None, "truncated")
    found = _OUTPUT.search(text)
    if found is None:
        return Parsed(None, "unparsable")
    head, output = text[: found.start()], text[found.end() :]
    extra = _NEXT_FIELD.search(output)
    output = (output[: extra.start()] if extra else output).strip()
    if output.lower() in _NOTHING:
        output = ""
    given_at = _INPUT.search(head)
    instruction = _one_line(head[: given_at.start()] if given_at else head)
    given = head[given_at.end() :].strip() if given_at else ""
    if not instruction or not output:
        return Parsed(None, "empty")
    words = len(instruction.split())
    if words < MIN_INSTRUCTION_WORDS:
        return Parsed(None, "too_short")
    if (
        words > MAX_INSTRUCTION_WORDS
        or max(map(len, (instruction, given, output))) > MAX_FIELD_CHARS
    ):
        return Parsed(None, "too_long")
    if not instruction[0].isalnum():
        return Parsed(None, "malformed")
    if _UNSUITABLE.search(instruction):
        return Parsed(None, "unsuitable")
    if _REFUSAL.search(output):
        return Parsed(None, "refusal")
    if given.lower() in _NOTHING:
        given = ""
    return Parsed(Example(instruction=instruction, input=given, output=output), None)


def _one_line(text: str) -> str:
    return " ".join(text.split())
