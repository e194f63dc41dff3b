// A batch's side of a job (GET /v1/batches/{id}): its OpenAI status, request counts and
// its output and error files, downloaded with the token (GET /v1/files/{id}/content).

import { api } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { DownloadButton } from "./Download";
import { when } from "./format";
import { usePolling } from "../../components/polling";
import type { Batch } from "./types";

const MOVING = ["validating", "in_progress", "finalizing", "cancelling"];

function FileCell({ id, filename, label }: { id: string | null; filename: string; label: string }) {
  if (!id) return <>none</>;
  return (
    <>
      <code>{id}</code>{" "}
      <DownloadButton path={`/v1/files/${encodeURIComponent(id)}/content`} filename={filename} label={label} />
    </>
  );
}

export function BatchResult({ jobId }: { jobId: string }) {
  const batch = useLoad((signal) => api<Batch>(`/v1/batches/${encodeURIComponent(jobId)}`, { signal }), [jobId]);
  const data = batch.data;
  usePolling(data !== null && MOVING.includes(data.status), batch.refresh);
  return (
    <section aria-labelledby="batch-title">
      <h3 id="batch-title">Batch</h3>
      <ErrorNote error={batch.error} />
      <Loading loading={batch.loading && !data} />
      {data && (
        <dl className="fields">
          <dt>Batch status</dt>
          <dd>{data.status}</dd>
          <dt>Endpoint</dt>
          <dd>{data.endpoint}</dd>
          <dt>Requests</dt>
          <dd>
            {data.request_counts.completed} completed, {data.request_counts.failed} failed, of{" "}
            {data.request_counts.total}
          </dd>
          <dt>Input file</dt>
          <dd>
            <code>{data.input_file_id}</code>
          </dd>
          <dt>Output file</dt>
          <dd>
            <FileCell id={data.output_file_id} filename={`${data.id}_output.jsonl`} label="Download output" />
          </dd>
          <dt>Error file</dt>
          <dd>
            <FileCell id={data.error_file_id} filename={`${data.id}_errors.jsonl`} label="Download errors" />
          </dd>
          {data.usage && (
            <>
              <dt>Tokens</dt>
              <dd>
                {data.usage.input_tokens ?? 0} in, {data.usage.output_tokens ?? 0} out
              </dd>
            </>
          )}
          <dt>Completed</dt>
          <dd>{when(data.completed_at ?? data.cancelled_at)}</dd>
          {data.errors && (
            <>
              <dt>Why it failed</dt>
              <dd>
                <ul>
                  {data.errors.data.map((error, index) => (
                    <li key={index}>
                      {error.message} ({error.code})
                    </li>
                  ))}
                </ul>
              </dd>
            </>
          )}
        </dl>
      )}
    </section>
  );
}
