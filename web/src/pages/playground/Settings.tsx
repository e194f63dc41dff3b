// The playground's settings: the model (GET /v1/models, with its state), max_tokens,
// temperature, inference-time scaling (budget, algorithm) and token logprobs.

import type { Dispatch, SetStateAction } from "react";

export interface Model {
  id: string;
  state: string | null;
}

export interface Params {
  model: string;
  maxTokens: string;
  temperature: string;
  budget: string; // empty: the model's own default
  algorithm: string; // empty: the model's own default
  logprobs: boolean;
}

export const ALGORITHMS = ["best-of-n", "self-consistency", "particle-filtering", "beam-search", "none"];

const STATES: Record<string, string> = {
  loaded: "loaded",
  loading: "loading: the first answer waits for it",
  sleeping: "sleeping: the first answer wakes it",
  unavailable: "unavailable",
};

export function modelLabel(model: Model): string {
  return model.state ? `${model.id} (${STATES[model.state] ?? model.state})` : model.id;
}

// Whether the request asks for a scaled answer (several candidates, one chosen).
export function scaled(params: Params): boolean {
  return Number(params.budget) > 1 && params.algorithm !== "none";
}

interface Props {
  form: string; // the id of the form these fields belong to
  models: Model[];
  params: Params;
  setParams: Dispatch<SetStateAction<Params>>;
  onRefresh: () => void;
  disabled: boolean;
}

const DEFAULT_ALGORITHM =
  "With the model's default algorithm, which is none unless its server sets one, " +
  "a budget alone may not scale: choose an algorithm to be sure.";

export function Settings({ form, models, params, setParams, onRefresh, disabled }: Props) {
  const set = (change: Partial<Params>) => setParams((old) => ({ ...old, ...change }));
  const isScaled = scaled(params);
  return (
    <fieldset className="pg-settings" disabled={disabled}>
      <legend>Settings</legend>
      <label>
        Model
        <select form={form} value={params.model} onChange={(e) => set({ model: e.target.value })} required>
          {models.length === 0 && <option value="">No model you may use is served</option>}
          {models.map((model) => (
            <option key={model.id} value={model.id}>
              {modelLabel(model)}
            </option>
          ))}
        </select>
      </label>
      <button type="button" onClick={onRefresh}>
        Refresh models
      </button>
      <label>
        Max tokens
        <input
          form={form}
          type="number"
          min={1}
          value={params.maxTokens}
          onChange={(e) => set({ maxTokens: e.target.value })}
        />
      </label>
      <label>
        Temperature
        <input
          form={form}
          type="number"
          min={0}
          max={2}
          step={0.1}
          value={params.temperature}
          onChange={(e) => set({ temperature: e.target.value })}
        />
      </label>
      <label>
        Scaling budget
        <input
          form={form}
          type="number"
          min={1}
          max={1024}
          step={1}
          value={params.budget}
          onChange={(e) => set({ budget: e.target.value })}
          aria-describedby="pg-budget-hint"
        />
      </label>
      <label>
        Scaling algorithm
        <select form={form} value={params.algorithm} onChange={(e) => set({ algorithm: e.target.value })}>
          <option value="">the model's default (none unless its server sets one)</option>
          {ALGORITHMS.map((name) => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <label className="ap-check">
        <input
          form={form}
          type="checkbox"
          checked={params.logprobs && !isScaled}
          disabled={isScaled}
          onChange={(e) => set({ logprobs: e.target.checked })}
          aria-describedby="pg-logprobs-hint"
        />
        Token logprobs
      </label>
      <p id="pg-budget-hint" className="muted pg-hint">
        Budget empty: the model's own scaling defaults. Over 1, several candidates are generated and one is chosen
        (your contract caps the budget, 16 unless raised).
        {isScaled && !params.algorithm && ` ${DEFAULT_ALGORITHM}`}
      </p>
      <p id="pg-logprobs-hint" className="muted pg-hint">
        {isScaled
          ? "Logprobs are off while the budget is over 1: a scaled answer is the chosen candidate, " +
            "sent without logprobs."
          : "Logprobs: each token of the answer shows its log-probability and its top 5 alternatives."}
      </p>
    </fieldset>
  );
}
