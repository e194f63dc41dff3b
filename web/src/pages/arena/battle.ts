// A battle's state, changed by what the user does and by the events of its stream
// (docs/arena.md): `battle`, `loading`, `delta`, `done`, then `turn`, `void` or `error`.

import { isRecord, text } from "./json";

export type Side = "a" | "b";
export const SIDES: Side[] = ["a", "b"];

export interface Answer {
  text: string;
  loading: boolean; // the side's model is being woken
  finish: string | null;
}

export interface Round {
  prompt: string;
  a: Answer;
  b: Answer;
}

export interface Revealed {
  side: string;
  term: string;
}

export interface VoteResult {
  vote: string;
  models: { a: string; b: string };
  counts: boolean;
  excluded_because: string | null;
  revealed: Revealed[];
  scope: string;
  team: string | null;
}

// new: nothing asked yet; answering: a turn streams; open: answered, may vote or go on;
// void: takes no vote; voted: closed, the models revealed.
export type Phase = "new" | "answering" | "open" | "void" | "voted";

export interface BattleState {
  id: string | null;
  rounds: Round[]; // the kept turns, and the one being answered
  phase: Phase;
  problem: string | null; // why the last turn was forgotten, or why the battle is void
  result: VoteResult | null;
}

export const NEW_BATTLE: BattleState = { id: null, rounds: [], phase: "new", problem: null, result: null };

export type Action =
  | { kind: "ask"; prompt: string }
  | { kind: "event"; event: unknown }
  | { kind: "forget"; problem: string } // the turn was refused or stopped: as before it
  | { kind: "void"; problem: string }
  | { kind: "stopped" } // the user stopped the turn (the fetch was aborted)
  | { kind: "voted"; result: VoteResult }
  | { kind: "reset" };

const EMPTY: Answer = { text: "", loading: false, finish: null };

function withSide(state: BattleState, side: Side, change: (answer: Answer) => Answer): BattleState {
  const last = state.rounds.at(-1);
  if (!last) return state;
  const round = { ...last, [side]: change(last[side]) };
  return { ...state, rounds: [...state.rounds.slice(0, -1), round] };
}

function sideOf(value: unknown): Side | null {
  return value === "a" || value === "b" ? value : null;
}

function onEvent(state: BattleState, event: unknown): BattleState {
  if (!isRecord(event)) return state;
  const side = sideOf(event.side);
  switch (event.type) {
    case "battle":
      return { ...state, id: text(event.id) ?? state.id };
    case "loading": {
      // No side is named (it would tell the model): each side not answering yet waits.
      const waiting = (a: Answer): Answer => (a.text || a.finish ? a : { ...a, loading: true });
      if (side) return withSide(state, side, (a) => ({ ...a, loading: true }));
      return withSide(withSide(state, "a", waiting), "b", waiting);
    }
    case "delta":
      return side
        ? withSide(state, side, (a) => ({ ...a, loading: false, text: a.text + (text(event.content) ?? "") }))
        : state;
    case "done":
      return side
        ? withSide(state, side, (a) => ({ ...a, loading: false, finish: text(event.finish_reason) ?? "stop" }))
        : state;
    case "turn":
      return { ...state, phase: "open", problem: null };
    case "void":
      return onAction(state, { kind: "void", problem: text(event.message) ?? "The battle is void." });
    case "error":
      return onAction(state, {
        kind: "forget",
        problem: text(event.message) ?? `The turn was refused (${text(event.code) ?? "error"}).`,
      });
    default:
      return state;
  }
}

export function onAction(state: BattleState, action: Action): BattleState {
  switch (action.kind) {
    case "ask":
      return {
        ...state,
        phase: "answering",
        problem: null,
        rounds: [...state.rounds, { prompt: action.prompt, a: EMPTY, b: EMPTY }],
      };
    case "event":
      return onEvent(state, action.event);
    case "forget": {
      const rounds = state.rounds.slice(0, -1);
      return { ...state, rounds, phase: rounds.length > 0 ? "open" : "new", problem: action.problem };
    }
    case "void":
      return { ...state, phase: "void", problem: action.problem };
    case "stopped":
      // A battle left before its first answers is void; a later turn is forgotten.
      if (state.rounds.length <= 1 && state.id) {
        return onAction(state, {
          kind: "void",
          problem: "You stopped the battle before its first answers: it is void and takes no vote.",
        });
      }
      return onAction(state, {
        kind: "forget",
        problem: "You stopped the turn: it is forgotten, and the battle is as it was before it.",
      });
    case "voted":
      return { ...state, phase: "voted", result: action.result, problem: null };
    case "reset":
      return NEW_BATTLE;
  }
}

// Whether an event ends a turn's stream.
export function isFinal(event: unknown): boolean {
  return isRecord(event) && (event.type === "turn" || event.type === "void" || event.type === "error");
}
