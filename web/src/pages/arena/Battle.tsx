// One battle: a prompt, the two anonymous answers side by side as they stream, more
// turns, then the vote that reveals the models (POST /arena/battles, …/turns, …/vote).
// Max tokens and temperature, when given, go to both sides alike with each turn.

import { useEffect, useReducer, useRef, useState } from "react";
import type { FormEvent } from "react";
import { ApiError, events, messageOf, send } from "../../api";
import { ErrorNote } from "../../components/Load";
import { NEW_BATTLE, SIDES, isFinal, onAction } from "./battle";
import { isRecord } from "./json";
import type { BattleState, Side } from "./battle";
import { VoteBar, VoteOutcome } from "./Vote";

export function Battle({ onVoted }: { onVoted: () => void }) {
  const [state, dispatch] = useReducer(onAction, NEW_BATTLE);
  const [prompt, setPrompt] = useState("");
  const [maxTokens, setMaxTokens] = useState("");
  const [temperature, setTemperature] = useState("");
  const controller = useRef<AbortController | null>(null);

  useEffect(() => () => controller.current?.abort(), []);

  async function ask(event: FormEvent) {
    event.preventDefault();
    const asked = prompt.trim();
    if (!asked || state.phase === "answering") return;
    const path = state.id
      ? `/arena/battles/${encodeURIComponent(state.id)}/turns`
      : "/arena/battles";
    const abort = new AbortController();
    controller.current = abort;
    dispatch({ kind: "ask", prompt: asked });
    setPrompt("");
    let ended = false;
    const body: Record<string, unknown> = { messages: [{ role: "user", content: asked }], stream: true };
    if (maxTokens) body.max_tokens = Number(maxTokens);
    if (temperature) body.temperature = Number(temperature);
    try {
      const response = await send(path, { body, signal: abort.signal });
      for await (const item of events(response)) {
        dispatch({ kind: "event", event: item });
        if (isFinal(item)) {
          ended = true;
          if (isRecord(item) && item.type === "error") setPrompt(asked);
        }
      }
      if (!ended) {
        dispatch({ kind: "forget", problem: "The answers broke off before both were whole: the turn is forgotten." });
        setPrompt(asked);
      }
    } catch (failure) {
      if (abort.signal.aborted) {
        if (!ended) dispatch({ kind: "stopped" });
      } else if (failure instanceof ApiError && failure.code === "battle_void") {
        dispatch({ kind: "void", problem: failure.message });
      } else {
        dispatch({ kind: "forget", problem: messageOf(failure) });
        setPrompt(asked);
      }
    } finally {
      if (controller.current === abort) controller.current = null;
    }
  }

  const answering = state.phase === "answering";
  const canAsk = state.phase === "new" || state.phase === "open" || answering;
  return (
    <>
      {state.rounds.length > 0 && (
        <div className="arena-sides">
          {SIDES.map((side) => (
            <SideColumn key={side} side={side} state={state} />
          ))}
        </div>
      )}
      {state.phase === "void" ? (
        <p className="error" role="alert">
          {state.problem}
        </p>
      ) : (
        <ErrorNote error={state.problem} />
      )}
      {state.phase === "open" && state.id && (
        <VoteBar battle={state.id} onVoted={(result) => { dispatch({ kind: "voted", result }); onVoted(); }} />
      )}
      {state.result && <VoteOutcome result={state.result} />}
      {canAsk ? (
        <form className="arena-ask" onSubmit={ask} aria-label={state.id ? "Next turn" : "New battle"}>
          <label>
            {state.id ? "Your next message (both models answer it, after their own answers so far)" : "Your prompt"}
            <textarea
              value={prompt}
              onChange={(e) => setPrompt(e.target.value)}
              rows={3}
              maxLength={100000}
              required
              disabled={answering}
            />
          </label>
          <fieldset className="arena-settings" disabled={answering}>
            <legend>Both sides answer with</legend>
            <label>
              Max tokens
              <input
                type="number"
                min={1}
                value={maxTokens}
                onChange={(e) => setMaxTokens(e.target.value)}
                placeholder="the platform's limit"
              />
            </label>
            <label>
              Temperature
              <input
                type="number"
                min={0}
                max={2}
                step={0.1}
                value={temperature}
                onChange={(e) => setTemperature(e.target.value)}
                placeholder="the servers' default"
              />
            </label>
          </fieldset>
          <div className="arena-buttons">
            <button type="submit" disabled={answering || !prompt.trim()}>
              {state.id ? "Send the next turn" : "Start a battle"}
            </button>
            {answering && (
              <button type="button" onClick={() => controller.current?.abort()}>
                Stop
              </button>
            )}
            {state.id && !answering && (
              <button type="button" onClick={() => dispatch({ kind: "reset" })}>
                New battle
              </button>
            )}
          </div>
        </form>
      ) : (
        <button type="button" onClick={() => dispatch({ kind: "reset" })}>
          New battle
        </button>
      )}
    </>
  );
}

function SideColumn({ side, state }: { side: Side; state: BattleState }) {
  const name = state.result?.models[side];
  const answering = state.phase === "answering";
  const label = `Model ${side.toUpperCase()}`;
  return (
    <section className="arena-side" aria-label={label}>
      <h3>
        {label}
        {name && <span className="arena-model">: {name}</span>}
      </h3>
      <div aria-live="polite" aria-busy={answering}>
        {state.rounds.map((round, index) => {
          const answer = round[side];
          const current = answering && index === state.rounds.length - 1;
          return (
            <div className="arena-turn" key={index}>
              <p className="arena-prompt">
                <span className="visually-hidden">You asked: </span>
                {round.prompt}
              </p>
              {answer.loading && (
                <p className="arena-loading" role="status">
                  A model of this battle is waking up… (an answer follows once it serves)
                </p>
              )}
              {current && !answer.loading && !answer.text && !answer.finish && (
                <p className="muted">Waiting for the answer…</p>
              )}
              <div className="arena-answer">{answer.text}</div>
              {answer.finish === "length" && <p className="muted">Cut at the token limit.</p>}
            </div>
          );
        })}
      </div>
    </section>
  );
}
