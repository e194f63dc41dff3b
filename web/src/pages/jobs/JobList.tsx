// The caller's jobs (admins: all), a page at a time from the server, filtered by type and
// status, with each job's progress; refreshed while any is pending or running.

import { useCallback, useState } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { href } from "../../route";
import { cancelJob } from "./cancel";
import { when } from "./format";
import { JobProgress } from "./JobProgress";
import { JobStatsBar } from "./JobStatsBar";
import { loadPage } from "../../components/paged";
import { Pager } from "../../components/Pager";
import { REFRESH_MS, usePolling } from "../../components/polling";
import { isActive, JOB_STATUSES, JOB_TYPES } from "./types";
import type { Job, JobStats } from "./types";

const LIMIT = 20;

export function JobList({ version }: { version: number }) {
  const [type, setType] = useState("");
  const [status, setStatus] = useState("");
  const [offset, setOffset] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const stats = useLoad((signal) => api<JobStats>("/jobs/stats", { signal }), [version]);
  const jobs = useLoad(
    (signal) => loadPage<Job>("/jobs", { type, status, limit: LIMIT, offset }, signal),
    [type, status, offset, version],
  );
  const reloadJobs = jobs.reload;
  const reloadStats = stats.reload;
  const live =
    (jobs.data?.items.some((job) => isActive(job.status)) ?? false) ||
    (stats.data !== null && stats.data.running > 0);

  const reloadBoth = useCallback(() => {
    reloadJobs();
    reloadStats();
  }, [reloadJobs, reloadStats]);
  const refreshJobs = jobs.refresh;
  const refreshStats = stats.refresh;
  const refreshBoth = useCallback(() => {
    refreshJobs();
    refreshStats();
  }, [refreshJobs, refreshStats]);
  usePolling(live, refreshBoth);

  async function cancel(job: Job) {
    setError(null);
    try {
      if (await cancelJob(job.id)) reloadBoth();
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  const page = jobs.data;
  return (
    <section aria-labelledby="jobs-list-title">
      <h2 id="jobs-list-title">Your jobs</h2>
      <ErrorNote error={stats.error} />
      {stats.data && <JobStatsBar stats={stats.data} />}
      <form className="inline" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <label>
          Type
          <select
            value={type}
            onChange={(e) => {
              setType(e.target.value);
              setOffset(0);
            }}
          >
            <option value="">any</option>
            {JOB_TYPES.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select
            value={status}
            onChange={(e) => {
              setStatus(e.target.value);
              setOffset(0);
            }}
          >
            <option value="">any</option>
            {JOB_STATUSES.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
      </form>
      <ErrorNote error={error ?? jobs.error} />
      <Loading loading={jobs.loading && !page} />
      {page && (
        <>
          <div className="table-scroll">
            <table>
              <caption>
                Jobs, newest first{live ? ` (refreshed every ${REFRESH_MS / 1000} s while any runs)` : ""}
              </caption>
              <thead>
                <tr>
                  <th scope="col">Job</th>
                  <th scope="col">Type</th>
                  <th scope="col">Model</th>
                  <th scope="col">Status</th>
                  <th scope="col">Progress</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {page.items.length === 0 && (
                  <tr>
                    <td colSpan={7}>No jobs{type || status ? " match these filters" : " yet"}.</td>
                  </tr>
                )}
                {page.items.map((job) => (
                  <tr key={job.id}>
                    <th scope="row">
                      <a href={href("jobs", job.id)}>{job.id}</a>
                      <div className="muted">{job.team ? `${job.owner} (${job.team})` : job.owner}</div>
                    </th>
                    <td>{job.type}</td>
                    <td>{job.model ?? "—"}</td>
                    <td>
                      <span className={`job-status job-${job.status}`}>{job.status}</span>
                      {job.error && <div className="muted">{job.error}</div>}
                    </td>
                    <td>
                      <JobProgress progress={job.progress} label={job.id} />
                    </td>
                    <td>{when(job.created_at)}</td>
                    <td>
                      {isActive(job.status) && (
                        <button type="button" onClick={() => cancel(job)}>
                          Cancel <span className="visually-hidden">{job.id}</span>
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager
            label="jobs"
            offset={offset}
            limit={LIMIT}
            total={page.total}
            shown={page.items.length}
            onOffset={setOffset}
          />
        </>
      )}
    </section>
  );
}
