// Set a server's replicas (POST /scale/{id}); the platform's refusal in words.

import { useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote } from "../../components/Load";
import { MAX_REPLICAS } from "./types";
import type { Server } from "./types";

// The count typed, or why it is not one.
function replicasOf(text: string): number | string {
  const count = Number(text);
  if (text.trim() === "" || !Number.isInteger(count)) return "Give the replicas as a whole number.";
  if (count < 0 || count > MAX_REPLICAS) return `Replicas go from 0 to ${MAX_REPLICAS}.`;
  return count;
}

export function ScaleForm({ server, onScaled }: { server: Server; onScaled: () => void }) {
  // Empty until the person types: the field shows what the server asks for now.
  const [typed, setTyped] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const text = typed ?? String(server.replicas);

  async function scale(event: FormEvent) {
    event.preventDefault();
    setError(null);
    setDone(null);
    const replicas = replicasOf(text);
    if (typeof replicas === "string") {
      setError(replicas);
      return;
    }
    setBusy(true);
    try {
      const scaled = await api<Server>(`/scale/${encodeURIComponent(server.server_id)}`, {
        body: { replicas },
      });
      setTyped(null);
      setDone(`Asked for ${scaled.replicas} replica${scaled.replicas === 1 ? "" : "s"}.`);
      onScaled();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    // noValidate: a count out of bounds is said in words here (role="alert"), not in the
    // browser's own bubble, which blocks the submit and is not announced everywhere.
    <form className="inline" onSubmit={scale} aria-label={`Scale ${server.name}`} noValidate>
      <label>
        Replicas
        <input
          type="number"
          min={0}
          max={MAX_REPLICAS}
          step={1}
          value={text}
          onChange={(e) => setTyped(e.target.value)}
          required
        />
      </label>
      <button type="submit" disabled={busy}>
        {busy ? "Scaling…" : "Scale"}
      </button>
      {done && (
        <p className="muted" role="status">
          {done}
        </p>
      )}
      <ErrorNote error={error} />
    </form>
  );
}
