// One job (#/jobs/<id>): its fields and progress from GET /jobs/{id}, cancel, and its
// type's own result (evaluation, batch, data generation).

import { useState } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { href } from "../../route";
import { BatchResult } from "./BatchResult";
import { cancelJob } from "./cancel";
import { DataGenResult } from "./DataGenResult";
import { EvalResult } from "./EvalResult";
import { text, when } from "./format";
import { JobProgress } from "./JobProgress";
import { usePolling } from "../../components/polling";
import { isActive } from "./types";
import type { Job } from "./types";

function TypeResult({ job }: { job: Job }) {
  if (job.type === "eval") return <EvalResult jobId={job.id} />;
  if (job.type === "batch") return <BatchResult jobId={job.id} />;
  if (job.type === "data_gen") return <DataGenResult jobId={job.id} />;
  const entries = Object.entries(job.result ?? {});
  return (
    <section aria-labelledby="result-title">
      <h3 id="result-title">Result</h3>
      {entries.length === 0 ? (
        <p>No result yet: it is written when the job ends.</p>
      ) : (
        <dl className="fields">
          {entries.map(([key, value]) => (
            <div key={key} className="field">
              <dt>{key}</dt>
              <dd>{text(value)}</dd>
            </div>
          ))}
        </dl>
      )}
    </section>
  );
}

export function JobDetail({ id }: { id: string }) {
  const job = useLoad((signal) => api<Job>(`/jobs/${encodeURIComponent(id)}`, { signal }), [id]);
  const [error, setError] = useState<string | null>(null);
  const data = job.data;
  usePolling(data !== null && isActive(data.status), job.refresh);

  async function cancel() {
    setError(null);
    try {
      if (await cancelJob(id)) job.reload();
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  return (
    <section aria-labelledby="job-title">
      <p>
        <a href={href("jobs")}>← All jobs</a>
      </p>
      <h2 id="job-title">Job {id}</h2>
      <ErrorNote error={error ?? job.error} />
      <Loading loading={job.loading && !data} />
      {data && (
        <>
          <dl className="fields">
            <dt>Type</dt>
            <dd>{data.type}</dd>
            <dt>Status</dt>
            <dd>
              <span className={`job-status job-${data.status}`}>{data.status}</span>
              {data.error && <div className="error-text">{data.error}</div>}
            </dd>
            <dt>Model</dt>
            <dd>{data.model ?? "—"}</dd>
            <dt>Owner</dt>
            <dd>{data.team ? `${data.owner} (${data.team})` : data.owner}</dd>
            <dt>Created</dt>
            <dd>{when(data.created_at)}</dd>
            <dt>Started</dt>
            <dd>{when(data.started_at)}</dd>
            <dt>Finished</dt>
            <dd>{when(data.finished_at)}</dd>
            <dt>Progress</dt>
            <dd>
              <JobProgress progress={data.progress} label={`job ${data.id}`} />
            </dd>
          </dl>
          {isActive(data.status) && (
            <button type="button" onClick={cancel}>
              Cancel this job
            </button>
          )}
          <TypeResult job={data} />
        </>
      )}
    </section>
  );
}
