// An evaluation's per-example records, a page of item indexes at a time
// (GET /eval/jobs/{id}/examples: the finished examples among offset … offset+limit-1).

import { useState } from "react";
import { api } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { usePolling } from "../../components/polling";
import type { EvalExamplePage } from "./types";

const LIMIT = 25;

export function EvalExamples({ jobId, live }: { jobId: string; live: boolean }) {
  const [offset, setOffset] = useState(0);
  const page = useLoad(
    (signal) =>
      api<EvalExamplePage>(`/eval/jobs/${encodeURIComponent(jobId)}/examples`, {
        query: { offset, limit: LIMIT },
        signal,
      }),
    // Once more when the job ends: its last examples may have finished after the last poll.
    [jobId, offset, live],
  );
  usePolling(live, page.refresh);
  const data = page.data;
  const last = data ? Math.min(offset + LIMIT, data.total) : 0;
  return (
    <>
      <ErrorNote error={page.error} />
      <Loading loading={page.loading && !data} />
      {data && (
        <>
          <div className="table-scroll">
            <table>
              <caption>
                Examples {data.total === 0 ? 0 : offset + 1}–{last} of {data.total} (finished ones only)
              </caption>
              <thead>
                <tr>
                  <th scope="col">Line</th>
                  <th scope="col">Expected</th>
                  <th scope="col">Answer</th>
                  <th scope="col">Correct</th>
                  <th scope="col">Loss</th>
                  <th scope="col">Completion</th>
                </tr>
              </thead>
              <tbody>
                {data.examples.length === 0 && (
                  <tr>
                    <td colSpan={6}>No finished example in this range yet.</td>
                  </tr>
                )}
                {data.examples.map((example) => (
                  <tr key={example.index}>
                    <th scope="row">{example.line ?? example.index + 1}</th>
                    {example.error ? (
                      <td colSpan={5} className="error-text">
                        Failed: {example.error.message} ({example.error.code})
                      </td>
                    ) : (
                      <>
                        <td>{example.expected ?? "—"}</td>
                        <td>{example.answer ?? "no answer"}</td>
                        <td>{example.correct ? "yes" : "no"}</td>
                        <td>{typeof example.loss === "number" ? example.loss.toFixed(3) : "—"}</td>
                        <td className="completion">{example.completion ?? ""}</td>
                      </>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav className="pager" aria-label="Pages of examples">
            <button type="button" disabled={offset <= 0} onClick={() => setOffset(Math.max(0, offset - LIMIT))}>
              Previous <span className="visually-hidden">examples</span>
            </button>
            <span aria-live="polite">
              {data.total === 0 ? 0 : offset + 1}–{last} of {data.total}
            </span>
            <button type="button" disabled={offset + LIMIT >= data.total} onClick={() => setOffset(offset + LIMIT)}>
              Next <span className="visually-hidden">examples</span>
            </button>
          </nav>
        </>
      )}
    </>
  );
}
