"""Partial answers grown one step at a time, for particle filtering and beam search.

A step is what the model writes up to the step delimiter ("\\n\\n" by default, a stop
sequence). A path is finished when the model ends its answer (end-of-sequence), stops
at one of the client's stop sequences, writes an empty step, reaches `max_steps`, or
uses up `max_tokens`. Where the server does not say whether an answer ended or met the
delimiter (llama.cpp), it is taken to have met the delimiter: the next step then comes
back empty, which finishes the path one call later.

Paths with the same prefix (copies after resampling, or one beam extended several
ways) are extended by one `generate(n=k)`: one request on a server with `n`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from modelserve.gateway.scaling.lm import Generation, LanguageModel, Prompt
from modelserve.gateway.scaling.results import Candidate, Meter, Options
from modelserve.gateway.scaling.rewards import Attempt


@dataclasses.dataclass(frozen=True)
class Path:
    prefix: str = ""  # the answer so far, as the model continues it (delimiter included)
    steps: tuple[str, ...] = ()
    logprobs: tuple[float, ...] | None = ()  # None once a step came without them
    tokens: int | None = 0  # completion tokens so far; None once a count was missing
    finished: bool = False
    finish_reason: str | None = None
    score: float = 0.0

    def text(self, delimiter: str) -> str:
        return self.prefix.removesuffix(delimiter)

    def attempt(self, delimiter: str) -> Attempt:
        return Attempt(
            self.text(delimiter),
            steps=self.steps,
            token_logprobs=self.logprobs,
            partial=not self.finished,
        )

    def candidate(self, delimiter: str) -> Candidate:
        return Candidate(
            self.text(delimiter),
            score=self.score,
            finish_reason=self.finish_reason,
            steps=len(self.steps),
        )


async def extend(
    meter: Meter,
    lm: LanguageModel,
    prompt: Prompt,
    paths: Sequence[Path],
    counts: Sequence[int],
    options: Options,
    *,
    logprobs: bool,
) -> list[list[Path]]:
    """Each of `paths` grown by one step, `counts[i]` different ways."""
    groups: dict[str, list[int]] = {}
    for index, path in enumerate(paths):
        groups.setdefault(path.prefix, []).append(index)
    order = list(groups.values())
    sizes = [sum(counts[index] for index in members) for members in order]
    stop = (*options.stop, options.step_delimiter)
    generated = await meter.generate(
        lm.generate(
            prompt.continued(paths[members[0]].prefix),
            n=size,
            max_tokens=_step_tokens(paths[members[0]], options),
            stop=stop,
            temperature=options.temperature,
            # Samples that share a request have no token count of their own but the
            # length of their log-probabilities, which a max_tokens cap needs.
            logprobs=logprobs or (size > 1 and options.max_tokens is not None),
        )
        for members, size in zip(order, sizes, strict=True)
    )
    grown: list[list[Path]] = [[] for _ in paths]
    for members, part in zip(order, generated, strict=True):
        samples = iter(part.samples)
        for index in members:
            for _ in range(counts[index]):
                grown[index].append(advance(paths[index], next(samples), options))
    return grown


def advance(path: Path, sample: Generation, options: Options) -> Path:
    """`path` with `sample` as its next step."""
    delimiter = options.step_delimiter
    step = sample.text.strip()
    ended = (
        sample.eos is True
        or (sample.stop_sequence is not None and sample.stop_sequence != delimiter)
        or not step
    )
    at_delimiter = not ended and sample.finish_reason == "stop"
    steps = (*path.steps, step) if step else path.steps
    used = sample.completion_tokens
    if used is None and sample.token_logprobs is not None:
        used = len(sample.token_logprobs)
    tokens = None if path.tokens is None or used is None else path.tokens + used
    logprobs = (
        None
        if path.logprobs is None or sample.token_logprobs is None
        else path.logprobs + sample.token_logprobs
    )
    finish_reason: str | None = None
    if ended:
        finish_reason = "stop"
    elif len(steps) >= options.max_steps or (
        options.max_tokens is not None and tokens is not None and tokens >= options.max_tokens
    ):
        finish_reason = "length"
    return Path(
        prefix=path.prefix + sample.text + (delimiter if at_delimiter else ""),
        steps=steps,
        logprobs=logprobs,
        tokens=tokens,
        finished=finish_reason is not None,
        finish_reason=finish_reason,
        score=path.score,
    )


def _step_tokens(path: Path, options: Options) -> int:
    if options.max_tokens is None or path.tokens is None:
        return options.step_max_tokens
    return max(1, min(options.step_max_tokens, options.max_tokens - path.tokens))
