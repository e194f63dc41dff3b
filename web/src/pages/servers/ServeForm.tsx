// Serve a model (POST /serve): its name, runtime, GPUs per replica and served name.

import { useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote } from "../../components/Load";

export function ServeForm({ onServed }: { onServed: () => void }) {
  const [model, setModel] = useState("");
  const [runtime, setRuntime] = useState("");
  const [gpus, setGpus] = useState("");
  const [servedName, setServedName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function serve(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body: Record<string, unknown> = { model_name: model };
    if (runtime) body.runtime = runtime;
    if (gpus) body.gpus = Number(gpus);
    if (servedName) body.served_name = servedName;
    try {
      await api("/serve", { body });
      setModel("");
      setServedName("");
      onServed();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="inline" onSubmit={serve} aria-label="Serve a model">
      <label>
        Model
        <input value={model} onChange={(e) => setModel(e.target.value)} required />
      </label>
      <label>
        Runtime
        <select value={runtime} onChange={(e) => setRuntime(e.target.value)}>
          <option value="">by the model's format</option>
          <option value="llamacpp">llama.cpp</option>
          <option value="vllm">vLLM</option>
        </select>
      </label>
      <label>
        GPUs per replica
        <input type="number" min={0} max={8} value={gpus} onChange={(e) => setGpus(e.target.value)} />
      </label>
      <label>
        Served name
        <input value={servedName} onChange={(e) => setServedName(e.target.value)} />
      </label>
      <button type="submit" disabled={busy}>
        {busy ? "Serving…" : "Serve"}
      </button>
      <ErrorNote error={error} />
    </form>
  );
}
