// A data-generation job's side (GET /data_gen/jobs/{id}): examples kept, why others were
// dropped, and its shards, each downloaded with the token.

import { api } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { DownloadButton } from "./Download";
import { bytes } from "./format";
import { usePolling } from "../../components/polling";
import { isActive } from "./types";
import type { DataGenJob } from "./types";

export function DataGenResult({ jobId }: { jobId: string }) {
  const path = `/data_gen/jobs/${encodeURIComponent(jobId)}`;
  const job = useLoad((signal) => api<DataGenJob>(path, { signal }), [path]);
  const data = job.data;
  // `examples` stays null until the job has ended and its shards are written.
  const live = data !== null && (isActive(data.status) || (data.examples === null && data.status !== "failed"));
  usePolling(live, job.refresh);
  const rejected = data ? Object.entries(data.rejected) : [];
  return (
    <section aria-labelledby="datagen-title">
      <h3 id="datagen-title">Data generation</h3>
      <ErrorNote error={job.error} />
      <Loading loading={job.loading && !data} />
      {data && (
        <>
          <dl className="fields">
            <dt>Output</dt>
            <dd>{data.output_uri}</dd>
            <dt>Seed set</dt>
            <dd>
              {data.seed_set.source}, {data.seed_set.count} tasks
            </dd>
            <dt>Examples kept</dt>
            <dd>
              {data.examples === null
                ? "counted once the shards are written"
                : `${data.examples} of ${String(data.config.num_examples ?? "?")}${data.short ? " (short: resume to make the rest)" : ""}`}
            </dd>
            <dt>Dropped</dt>
            <dd>{rejected.length === 0 ? "none" : rejected.map(([why, n]) => `${why} ${n}`).join(", ")}</dd>
            <dt>Items failed</dt>
            <dd>{data.items_failed ?? "—"}</dd>
            <dt>Resumed</dt>
            <dd>{data.resumes} times</dd>
          </dl>
          <div className="table-scroll">
            <table>
              <caption>Shards</caption>
              <thead>
                <tr>
                  <th scope="col">Shard</th>
                  <th scope="col">Examples</th>
                  <th scope="col">Size</th>
                  <th scope="col">
                    <span className="visually-hidden">Download</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {data.shards.length === 0 && (
                  <tr>
                    <td colSpan={4}>No shards yet: they are written when the job ends.</td>
                  </tr>
                )}
                {data.shards.map((shard) => (
                  <tr key={shard.name}>
                    <th scope="row">
                      {shard.name}
                      <div className="muted">{shard.uri}</div>
                    </th>
                    <td>{shard.examples}</td>
                    <td>{bytes(shard.bytes)}</td>
                    <td>
                      <DownloadButton
                        path={`${path}/shards/${encodeURIComponent(shard.name)}`}
                        filename={shard.name}
                        label={`Download ${shard.name}`}
                      />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
