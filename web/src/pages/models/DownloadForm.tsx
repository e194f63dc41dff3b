// Start a download from the upstream store: a model's folder (its upstream id: the
// seeds' POST /download/{id}) or one object (POST /downloads with key), optionally under
// a record id and name of one's own. The download service decides who may download what.

import { useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf, send } from "../../api";
import { ErrorNote } from "../../components/Load";
import type { DownloadJob } from "./types";

type Kind = "folder" | "file";

// What to send: the seeds' call for a bare upstream id, else the source named in full.
export function downloadRequest(
  kind: Kind,
  path: string,
  fields: { bucket: string; modelId: string; name: string; sha256: string },
): { path: string; body: Record<string, string> } {
  const body: Record<string, string> = {};
  if (fields.name) body.name = fields.name;
  if (kind === "file" && fields.sha256) body.sha256 = fields.sha256;
  if (kind === "folder" && !fields.bucket && !fields.modelId && !path.includes("/")) {
    return { path: `/download/${encodeURIComponent(path)}`, body };
  }
  if (kind === "folder") body.prefix = path.endsWith("/") ? path : `${path}/`;
  else body.key = path;
  if (fields.bucket) body.bucket = fields.bucket;
  if (fields.modelId) body.model_id = fields.modelId;
  return { path: "/downloads", body };
}

export function DownloadForm({ onStarted }: { onStarted: (job: DownloadJob) => void }) {
  const [kind, setKind] = useState<Kind>("folder");
  const [path, setPath] = useState("");
  const [modelId, setModelId] = useState("");
  const [name, setName] = useState("");
  const [bucket, setBucket] = useState("");
  const [sha256, setSha256] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);

  async function start(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setNote(null);
    const fields = { bucket: bucket.trim(), modelId: modelId.trim(), name: name.trim(), sha256: sha256.trim() };
    const request = downloadRequest(kind, path.trim(), fields);
    try {
      const response = await send(request.path, { body: request.body });
      const job = (await response.json()) as DownloadJob;
      setNote(
        response.status === 202
          ? `The download of ${job.model_id} is queued: follow it below.`
          : `${job.model_id} was queued, copying or ready already (${job.state}): nothing new was started.`,
      );
      onStarted(job);
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="download-title" className="panel">
      <h2 id="download-title">Download a model</h2>
      <form className="inline" onSubmit={start} aria-labelledby="download-title">
        <label>
          Source
          <select value={kind} onChange={(e) => setKind(e.target.value as Kind)}>
            <option value="folder">a model's folder</option>
            <option value="file">one file</option>
          </select>
        </label>
        <label>
          {kind === "folder" ? "Upstream model id (folder)" : "Object key"}
          <input
            value={path}
            onChange={(e) => setPath(e.target.value)}
            required
            maxLength={1024}
            placeholder={kind === "folder" ? "ac04b7c6-…" : "org/model.Q4_K_M.gguf"}
            aria-describedby="download-hint"
          />
        </label>
        <label>
          Record id
          <input
            value={modelId}
            onChange={(e) => setModelId(e.target.value)}
            maxLength={128}
            pattern="[A-Za-z0-9][A-Za-z0-9._\-]*"
            title="1–128 letters, digits, . _ -, starting with a letter or digit"
            placeholder={kind === "folder" ? "the folder's id" : "from the source"}
          />
        </label>
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} maxLength={256} placeholder="from the model" />
        </label>
        <label>
          Bucket
          <input value={bucket} onChange={(e) => setBucket(e.target.value)} maxLength={63} placeholder="the default" />
        </label>
        {kind === "file" && (
          <label>
            Expected SHA-256
            <input value={sha256} onChange={(e) => setSha256(e.target.value)} maxLength={64} pattern="[0-9a-fA-F]{64}" />
          </label>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Starting…" : "Download"}
        </button>
      </form>
      <p id="download-hint" className="muted">
        Copies the model from the upstream store into the platform&apos;s, verifying every file; its record appears
        among the versions once it is ready. Users download what their contract allows.
      </p>
      {note && (
        <p className="notice" role="status">
          {note}
        </p>
      )}
      <ErrorNote error={error} />
    </section>
  );
}

// Cancel or retry a download (POST /downloads/{id}/cancel | retry).
export async function manageDownload(id: string, action: "cancel" | "retry"): Promise<DownloadJob | null> {
  if (action === "cancel" && !window.confirm(`Cancel the download of ${id}? Nothing of it stays in the store.`)) {
    return null;
  }
  return api<DownloadJob>(`/downloads/${encodeURIComponent(id)}/${action}`, { method: "POST" });
}
