// Queue an evaluation (POST /eval/jobs): model, name, dataset_ref, max_samples and
// max_tokens. A dataset of one's own is an OpenAI File uploaded first (POST /v1/files,
// purpose batch), whose id is the dataset_ref; a shared one is named by its key under
// datasets/.

import { useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote } from "../../components/Load";
import { href } from "../../route";
import type { EvalJob, UploadedFile } from "./types";

export function EvalForm({ onQueued }: { onQueued: () => void }) {
  const [model, setModel] = useState("");
  const [name, setName] = useState("");
  const [dataset, setDataset] = useState("");
  const [maxSamples, setMaxSamples] = useState("");
  const [maxTokens, setMaxTokens] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [queued, setQueued] = useState<EvalJob | null>(null);
  const [uploaded, setUploaded] = useState<UploadedFile | null>(null);

  async function upload() {
    if (!file) return;
    setBusy(true);
    setError(null);
    try {
      const form = new FormData();
      form.append("purpose", "batch");
      form.append("file", file);
      const answer = await api<UploadedFile>("/v1/files", { body: form });
      setUploaded(answer);
      setDataset(answer.id);
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  async function queue(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body: Record<string, unknown> = { model_id: model, name, dataset_ref: dataset };
    if (maxSamples) body.max_samples = Number(maxSamples);
    if (maxTokens) body.max_tokens = Number(maxTokens);
    try {
      setQueued(await api<EvalJob>("/eval/jobs", { body }));
      onQueued();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="eval-form-title" className="panel">
      <h2 id="eval-form-title">Start an evaluation</h2>
      <form className="inline" onSubmit={queue} aria-labelledby="eval-form-title">
        <label>
          Model (served name)
          <input value={model} onChange={(e) => setModel(e.target.value)} required maxLength={256} />
        </label>
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={256} />
        </label>
        <label>
          Dataset (dataset_ref)
          <input
            value={dataset}
            onChange={(e) => setDataset(e.target.value)}
            required
            maxLength={1024}
            aria-describedby="eval-dataset-hint"
          />
        </label>
        <label>
          Max samples
          <input
            type="number"
            min={1}
            max={1000000}
            value={maxSamples}
            onChange={(e) => setMaxSamples(e.target.value)}
            placeholder="all"
          />
        </label>
        <label>
          Max tokens per answer
          <input
            type="number"
            min={1}
            max={32768}
            value={maxTokens}
            onChange={(e) => setMaxTokens(e.target.value)}
            placeholder="256"
          />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? "Working…" : "Start evaluation"}
        </button>
      </form>
      <p id="eval-dataset-hint" className="muted">
        A JSONL file, one example a line (<code>prompt</code>, <code>question</code> or <code>messages</code>, and{" "}
        <code>answer</code>). Your own dataset must be uploaded first: its file id (<code>file-…</code>) is the
        dataset_ref, and the upload below fills it in. A shared dataset under <code>datasets/</code> of the platform
        store is named by its key, e.g. <code>math_eval.jsonl</code>. The dataset is read when the job is queued.
      </p>
      <div className="inline">
        <label>
          Dataset file to upload (.jsonl)
          <input type="file" accept=".jsonl,application/jsonl,application/x-ndjson" onChange={(e) => setFile(e.target.files?.[0] ?? null)} />
        </label>
        <button type="button" onClick={upload} disabled={busy || !file}>
          Upload dataset
        </button>
      </div>
      {uploaded && (
        <p role="status">
          Uploaded {uploaded.filename} as <code>{uploaded.id}</code>.
        </p>
      )}
      <ErrorNote error={error} />
      {queued && (
        <p className="notice" role="status">
          Queued <a href={href("jobs", queued.job_id)}>{queued.job_id}</a> ({queued.progress.total} examples).
        </p>
      )}
    </section>
  );
}
