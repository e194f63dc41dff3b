// Cancelling a job, after the user confirms it (POST /jobs/{id}/cancel).

import { api } from "../../api";
import type { Job } from "./types";

export async function cancelJob(id: string): Promise<boolean> {
  const question = `Cancel job ${id}? Items not yet run are never run; what finished is kept.`;
  if (!window.confirm(question)) return false;
  await api<Job>(`/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  return true;
}
