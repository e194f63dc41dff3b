// Register a version (POST /models/register: id, name, source, tags, uri), then follow
// its registration (GET /models/registrations/{id}) until it is ready or failed.

import { useEffect, useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote, useLoad } from "../../components/Load";
import { bytes, duration, rate } from "../jobs/format";
import { usePolling } from "../../components/polling";
import { REGISTRATION_ENDED } from "./types";
import type { Registration } from "./types";

const WATCH_MS = 1500;

function Watch({ id, onReady }: { id: string; onReady: () => void }) {
  const job = useLoad(
    (signal) => api<Registration>(`/models/registrations/${encodeURIComponent(id)}`, { signal }),
    [id],
  );
  const data = job.data;
  const ended = data !== null && REGISTRATION_ENDED.includes(data.state);
  const ready = data?.state === "ready";
  usePolling(!ended, job.refresh, WATCH_MS);
  useEffect(() => {
    if (ready) onReady();
  }, [ready, onReady]);

  return (
    <div className="notice">
      <p role="status">
        Registration of <strong>{id}</strong>: {data ? data.state : "asking…"}
      </p>
      {data && (
        <>
          <progress
            max={1}
            value={data.progress ?? undefined}
            aria-label={`Registration of ${id}`}
          />
          <p className="muted">
            {bytes(data.bytes_done)} of {bytes(data.bytes_total)}
            {!ended && ` · ${rate(data.rate_bytes_per_second === null ? null : data.rate_bytes_per_second / 1048576, "MiB")}`}
            {!ended && data.eta_seconds !== null && ` · ETA ${duration(data.eta_seconds)}`}
          </p>
          {data.error && (
            <p className="error" role="alert">
              {data.error.message} ({data.error.code})
            </p>
          )}
        </>
      )}
      <ErrorNote error={job.error} />
    </div>
  );
}

export function RegisterForm({ onRegistered }: { onRegistered: () => void }) {
  const [id, setId] = useState("");
  const [name, setName] = useState("");
  const [source, setSource] = useState("");
  const [tags, setTags] = useState("");
  const [uri, setUri] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [watching, setWatching] = useState<string | null>(null);

  async function register(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body: Record<string, unknown> = { id: id.trim(), uri: uri.trim() };
    if (name.trim()) body.name = name.trim();
    if (source.trim()) body.source = source.trim();
    if (tags.trim()) body.tags = tags.trim();
    try {
      const job = await api<Registration>("/models/register", { body });
      setWatching(job.model_id);
      setId("");
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="register-title" className="panel">
      <h2 id="register-title">Register a version</h2>
      <form className="inline" onSubmit={register} aria-labelledby="register-title">
        <label>
          Version id
          <input
            value={id}
            onChange={(e) => setId(e.target.value)}
            required
            maxLength={128}
            pattern="[A-Za-z0-9][A-Za-z0-9._\-]*"
            title="1–128 letters, digits, . _ -, starting with a letter or digit"
          />
        </label>
        <label>
          Model name
          <input value={name} onChange={(e) => setName(e.target.value)} maxLength={256} placeholder="from the file" />
        </label>
        <label>
          Source label
          <input value={source} onChange={(e) => setSource(e.target.value)} maxLength={256} />
        </label>
        <label>
          Tags (comma-separated)
          <input value={tags} onChange={(e) => setTags(e.target.value)} />
        </label>
        <label>
          Checkpoint URI
          <input
            value={uri}
            onChange={(e) => setUri(e.target.value)}
            required
            maxLength={2048}
            placeholder="s3://bucket/key"
            aria-describedby="register-hint"
          />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? "Registering…" : "Register"}
        </button>
      </form>
      <p id="register-hint" className="muted">
        The checkpoint must already be in the platform store (one file, or a folder ending in <code>/</code>). The
        platform copies it into its own immutable version, hashing it and reading its GGUF header.
      </p>
      <ErrorNote error={error} />
      {watching && <Watch key={watching} id={watching} onReady={onRegistered} />}
    </section>
  );
}
