// A job's progress: a <progress> bar named for the job, done / total, rate and time left.

import type { Progress } from "./types";
import { duration, rate } from "./format";

export function JobProgress({ progress, label }: { progress: Progress; label: string }) {
  const finished = progress.done + progress.failed;
  return (
    <div className="job-progress">
      <progress
        max={progress.total || 1}
        value={progress.total ? finished : progress.fraction}
        aria-label={`Progress of ${label}`}
      />
      <div className="muted">
        {progress.done} / {progress.total} done
        {progress.failed > 0 && `, ${progress.failed} failed`}
        {" · "}
        {rate(progress.rate, "items")}
        {progress.eta_seconds !== null && progress.eta_seconds > 0 && ` · ETA ${duration(progress.eta_seconds)}`}
      </div>
    </div>
  );
}
