// The gateway's model records and registry answers (docs/api.md, registry.md,
// download.md; common/model_versions.py).

export interface ModelRecord {
  id: string;
  name: string;
  format: string;
  uri: string;
  size?: number | null;
  origin: string; // download | register
  tags: string[];
  source_label?: string | null;
  requested_by?: string;
  created_at?: string | null;
}

export interface RolloutView {
  id: string;
  phase: string; // Progressing, Complete, RolledBack, Superseded
  from_version: string | null;
  to_version: string | null;
  reason: string;
  message: string;
  started_at: string;
  finished_at: string | null;
}

export interface ServerVersion {
  server_id: string;
  namespace: string;
  name: string;
  version: string | null;
  wanted_version: string | null;
  rollout: RolloutView | null;
  error?: string | null;
}

export interface LastRollback {
  history_id: number;
  failed_id: string | null;
  restored_id: string | null;
  reason: string | null;
  message: string | null;
  server: string | null;
  at: string;
}

export interface ActiveModel {
  name: string;
  id: string;
  uri: string;
  set_by: string;
  set_at: string;
  history_id: number;
  last_rollback: LastRollback | null;
  servers: ServerVersion[];
}

export interface Activation {
  name: string;
  id: string;
  uri: string;
  previous: { id: string; uri: string | null } | null;
  history_id: number;
  changed: boolean;
  servers: ServerVersion[];
}

export interface HistoryEntry {
  id: number;
  name: string;
  from_id: string | null;
  to_id: string | null;
  actor: string;
  action: string; // set_active | automatic_rollback
  reason: string | null;
  message: string | null;
  server: string | null;
  pointer_moved: boolean | null;
  at: string;
}

export interface Registration {
  model_id: string;
  kind: string;
  name: string | null;
  state: string; // queued, transferring, verifying, ready, failed, cancelled
  progress: number | null; // 0 to 1
  bytes_done: number;
  bytes_total: number | null;
  rate_bytes_per_second: number | null;
  eta_seconds: number | null;
  error: { code: string; message: string } | null;
}

export const REGISTRATION_ENDED = ["ready", "failed", "cancelled"];

export function rollingOut(active: ActiveModel[] | null): boolean {
  return (active ?? []).some((model) =>
    model.servers.some((server) => {
      const phase = server.rollout?.phase;
      if (phase === "Progressing") return true;
      // Pointed at a new version that the operator has not started rolling yet.
      const pending = server.wanted_version !== null && server.wanted_version !== server.version;
      return pending && phase !== "RolledBack" && phase !== "Superseded";
    }),
  );
}

// A download's job (GET /downloads, GET /downloads/{id}; the download service's
// GET /status/{id}): a registration's job is one too, kind "register".
export interface DownloadJob extends Registration {
  source: string;
  requested_by: string;
  attempts: number;
  files_done: number;
  files_total: number | null;
  created_at: string | null;
  finished_at: string | null;
}

export const DOWNLOAD_STATES = ["queued", "transferring", "verifying", "ready", "failed", "cancelled"];

export function downloadActive(state: string): boolean {
  return !REGISTRATION_ENDED.includes(state);
}
