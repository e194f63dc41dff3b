// What a chat.completion.chunk of a streamed answer holds for the playground: its text,
// its tokens' log-probabilities (choices[0].logprobs.content), its finish reason, a
// scaled answer's trace (the final chunk's `scaling`, docs/scaling.md), or an error.

import { isRecord, list, num, streamError, text } from "../arena/json";
import type { Json } from "../arena/json";

export interface Alternative {
  token: string;
  logprob: number;
}

export interface Token extends Alternative {
  top: Alternative[];
}

export interface Candidate {
  index: number;
  score: number | null;
  answer: string | null;
  finish: string | null;
  steps: number;
  text: string;
}

export interface Trace {
  algorithm: string;
  budget: number | null;
  reward: string | null;
  selected: number | null;
  candidates: Candidate[];
  rounds: number | null;
  calls: number | null;
  generationSeconds: number | null;
  rewardSeconds: number | null;
}

export interface Piece {
  content: string;
  tokens: Token[];
  finish: string | null;
  trace: Trace | null;
  error: string | null;
}

function alternative(value: unknown): Alternative | null {
  if (!isRecord(value)) return null;
  const token = text(value.token);
  const logprob = num(value.logprob);
  return token === null || logprob === null ? null : { token, logprob };
}

function tokensOf(logprobs: unknown): Token[] {
  if (!isRecord(logprobs)) return [];
  return list(logprobs.content).flatMap((item) => {
    const found = alternative(item);
    if (!found || !isRecord(item)) return [];
    const top = list(item.top_logprobs).flatMap((alt) => alternative(alt) ?? []);
    return [{ ...found, top }];
  });
}

function candidateOf(value: unknown, index: number): Candidate | null {
  if (!isRecord(value)) return null;
  return {
    index: num(value.index) ?? index,
    score: num(value.score),
    answer: text(value.answer),
    finish: text(value.finish_reason),
    steps: num(value.steps) ?? 0,
    text: text(value.text) ?? "",
  };
}

export function traceOf(value: unknown): Trace | null {
  if (!isRecord(value)) return null;
  return {
    algorithm: text(value.algorithm) ?? "unknown",
    budget: num(value.budget),
    reward: text(value.reward),
    selected: num(value.selected),
    candidates: list(value.candidates).flatMap((c, i) => candidateOf(c, i) ?? []),
    rounds: num(value.rounds),
    calls: num(value.upstream_calls),
    generationSeconds: num(value.generation_seconds),
    rewardSeconds: num(value.reward_seconds),
  };
}

export function pieceOf(chunk: unknown): Piece {
  const piece: Piece = { content: "", tokens: [], finish: null, trace: null, error: null };
  if (!isRecord(chunk)) return piece;
  piece.error = streamError(chunk);
  piece.trace = traceOf(chunk.scaling);
  const choice: unknown = list(chunk.choices)[0];
  if (isRecord(choice)) {
    const delta: Json = isRecord(choice.delta) ? choice.delta : {};
    piece.content = text(delta.content) ?? "";
    piece.tokens = tokensOf(choice.logprobs);
    piece.finish = text(choice.finish_reason);
  }
  return piece;
}
