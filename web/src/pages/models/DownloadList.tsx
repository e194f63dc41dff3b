// Downloads (and registrations, which are jobs of the same engine), newest first, a page
// in one request (GET /downloads?state=&limit=&offset=, X-Total-Count), each with a
// progress bar, bytes, rate and time left; refreshed every 1.5 s while one is moving.
// Cancel and retry; a job that becomes ready tells the page, whose records then reload.

import { useEffect, useRef, useState } from "react";
import { messageOf } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { loadPage } from "../../components/paged";
import { Pager } from "../../components/Pager";
import { bytes, duration, when } from "../jobs/format";
import { usePolling } from "../../components/polling";
import { useSession } from "../../session";
import { manageDownload } from "./DownloadForm";
import { DOWNLOAD_STATES, downloadActive } from "./types";
import type { DownloadJob } from "./types";
import "./downloads.css";

const WATCH_MS = 1500;
const PAGE = 20;

const STATE_CLASS: Record<string, string> = {
  ready: "job-done",
  failed: "job-failed",
  cancelled: "job-cancelled",
};

function Progress({ job }: { job: DownloadJob }) {
  const moving = downloadActive(job.state);
  return (
    <div className="job-progress">
      <progress max={1} value={job.progress ?? undefined} aria-label={`Progress of ${job.model_id}`} />
      <div className="muted">
        {bytes(job.bytes_done)} of {bytes(job.bytes_total)}
        {job.files_total !== null && ` · ${job.files_done} / ${job.files_total} files`}
        {job.rate_bytes_per_second !== null && ` · ${bytes(job.rate_bytes_per_second)}/s`}
        {moving && job.eta_seconds !== null && ` · ${duration(job.eta_seconds)} left`}
      </div>
    </div>
  );
}

interface Props {
  version: number; // bumped when a download was started
  onReady: () => void;
}

export function DownloadList({ version, onReady }: Props) {
  const { user, isAdmin } = useSession();
  const [state, setState] = useState("");
  const [offset, setOffset] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const jobs = useLoad(
    (signal) =>
      loadPage<DownloadJob>("/downloads", { state: state || undefined, limit: PAGE, offset }, signal),
    [state, offset, version],
  );
  const reload = jobs.reload;
  const moving = (jobs.data?.items ?? []).filter((job) => downloadActive(job.state)).length;
  usePolling(moving > 0, jobs.refresh, WATCH_MS);

  // The page's records reload when a job becomes ready after the list was first shown
  // (one seen moving, or one that was quicker than the first refresh).
  const knownReady = useRef<Set<string> | null>(null);
  // Another page or filter: what is ready there is not news.
  useEffect(() => {
    knownReady.current = null;
  }, [state, offset]);
  useEffect(() => {
    if (!jobs.data) return;
    const ready = jobs.data.items.filter((job) => job.state === "ready").map((job) => job.model_id);
    if (knownReady.current === null) {
      knownReady.current = new Set(ready);
      return;
    }
    const known = knownReady.current;
    const fresh = ready.filter((id) => !known.has(id));
    fresh.forEach((id) => known.add(id));
    if (fresh.length > 0) onReady();
  }, [jobs.data, onReady]);

  // Cancel and retry are the requester's (and admins'); one who only asked for the same
  // model too sees the job but may not manage it (the service answers 403 not_owner).
  function mayManage(job: DownloadJob): boolean {
    return isAdmin || job.requested_by === user?.username;
  }

  async function act(job: DownloadJob, action: "cancel" | "retry") {
    setError(null);
    try {
      if (await manageDownload(job.model_id, action)) reload();
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  const list = jobs.data?.items ?? null;
  return (
    <section aria-labelledby="downloads-title">
      <h2 id="downloads-title">Downloads and registrations</h2>
      <form className="inline" aria-label="Filter downloads" onSubmit={(e) => e.preventDefault()}>
        <label>
          State
          <select
            value={state}
            onChange={(e) => {
              setState(e.target.value);
              setOffset(0);
            }}
          >
            <option value="">any</option>
            {DOWNLOAD_STATES.map((found) => (
              <option key={found} value={found}>
                {found}
              </option>
            ))}
          </select>
        </label>
      </form>
      <ErrorNote error={error ?? jobs.error} />
      <Loading loading={jobs.loading && !list} />
      {list && (
        <>
          <p className="muted" role="status">
            {moving > 0 ? `${moving} moving: refreshed every ${WATCH_MS / 1000} s` : "None moving."}
          </p>
          <div className="table-scroll">
            <table>
              <caption>Downloads and registrations, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Record id</th>
                  <th scope="col">Source</th>
                  <th scope="col">State</th>
                  <th scope="col">Progress</th>
                  <th scope="col">Asked</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {list.length === 0 && (
                  <tr>
                    <td colSpan={6}>No downloads{state ? ` ${state}` : ""}.</td>
                  </tr>
                )}
                {list.map((job) => (
                  <tr key={job.model_id}>
                    <th scope="row">
                      {job.model_id}
                      <div className="muted">
                        {job.kind}
                        {job.name && ` · ${job.name}`}
                      </div>
                    </th>
                    <td className="source">{job.source}</td>
                    <td>
                      <span className={`job-status ${STATE_CLASS[job.state] ?? "job-running"}`}>{job.state}</span>
                      {job.attempts > 1 && <div className="muted">attempt {job.attempts}</div>}
                      {job.error && (
                        <div className="error-text">
                          {job.error.message} ({job.error.code})
                        </div>
                      )}
                    </td>
                    <td>
                      <Progress job={job} />
                    </td>
                    <td>
                      {job.requested_by}
                      <div className="muted">{when(job.created_at)}</div>
                    </td>
                    <td>
                      {mayManage(job) && downloadActive(job.state) && (
                        <button type="button" onClick={() => void act(job, "cancel")}>
                          Cancel <span className="visually-hidden">{job.model_id}</span>
                        </button>
                      )}
                      {mayManage(job) && (job.state === "failed" || job.state === "cancelled") && (
                        <button type="button" onClick={() => void act(job, "retry")}>
                          Retry <span className="visually-hidden">{job.model_id}</span>
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager
            label="downloads"
            offset={offset}
            limit={PAGE}
            total={jobs.data?.total ?? list.length}
            shown={list.length}
            onOffset={setOffset}
          />
        </>
      )}
    </section>
  );
}
