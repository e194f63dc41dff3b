// An evaluation job's result (GET /eval/jobs/{id}): accuracy, correct of judged, failed,
// average loss, and its per-example records.

import { api } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { EvalExamples } from "./EvalExamples";
import { percent } from "./format";
import { usePolling } from "../../components/polling";
import { isActive } from "./types";
import type { EvalJob } from "./types";

export function EvalResult({ jobId }: { jobId: string }) {
  const job = useLoad((signal) => api<EvalJob>(`/eval/jobs/${encodeURIComponent(jobId)}`, { signal }), [jobId]);
  // A job whose examples are all finished stays "running" until its result is written.
  const live = job.data ? isActive(job.data.status) : false;
  usePolling(live, job.refresh);
  const data = job.data;
  const result = data?.result ?? null;
  return (
    <section aria-labelledby="eval-title">
      <h3 id="eval-title">Evaluation</h3>
      <ErrorNote error={job.error} />
      <Loading loading={job.loading && !data} />
      {data && (
        <dl className="fields">
          <dt>Name</dt>
          <dd>{data.name}</dd>
          <dt>Dataset</dt>
          <dd>
            {data.dataset_ref} <span className="muted">({data.dataset})</span>
          </dd>
          <dt>Scaling</dt>
          <dd>{data.budget ? `${data.algorithm ?? "default"}, budget ${data.budget}` : "none"}</dd>
          {result ? (
            <>
              <dt>Accuracy</dt>
              <dd>{percent(result.accuracy)}</dd>
              <dt>Correct</dt>
              <dd>
                {result.correct} of {result.total_samples} judged
              </dd>
              <dt>Failed examples</dt>
              <dd>{result.failed}</dd>
              <dt>Average loss</dt>
              <dd>
                {result.avg_loss === null ? "—" : result.avg_loss.toFixed(4)}{" "}
                <span className="muted">({result.loss_samples} examples with log-probabilities)</span>
              </dd>
              <dt>Per-example log</dt>
              <dd>{result.examples ?? "not written (per_example_logging off)"}</dd>
            </>
          ) : (
            <>
              <dt>Result</dt>
              <dd>written when the job ends</dd>
            </>
          )}
        </dl>
      )}
      <EvalExamples jobId={jobId} live={live} />
    </section>
  );
}
