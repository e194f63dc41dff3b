// Jobs: the caller's offline work (docs/jobs.md) — statistics, a paginated list with each
// job's progress, cancel, one job's result (#/jobs/<id>), and starting an evaluation.

import { useState } from "react";
import { EvalForm } from "./jobs/EvalForm";
import { JobDetail } from "./jobs/JobDetail";
import { JobList } from "./jobs/JobList";
import "./pages-jobs-models.css";

export function Jobs({ route }: { route: string[] }) {
  const [version, setVersion] = useState(0);
  const id = route[0];
  if (id) {
    return (
      <div className="jm-page">
        <JobDetail key={id} id={id} />
      </div>
    );
  }
  return (
    <div className="jm-page">
      <EvalForm onQueued={() => setVersion((n) => n + 1)} />
      <JobList version={version} />
    </div>
  );
}
