// The caller's jobs by state, and how many were made in the last hour (GET /jobs/stats).

import type { JobStats } from "./types";

export function JobStatsBar({ stats }: { stats: JobStats }) {
  const entries: [string, number][] = [
    ["Pending", stats.pending],
    ["Running", stats.running],
    ["Done", stats.done],
    ["Failed", stats.failed],
    ["Jobs in the last hour", stats.jobs_last_hour],
  ];
  return (
    <dl className="stats" aria-label="Job statistics">
      {entries.map(([label, value]) => (
        <div key={label}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}
