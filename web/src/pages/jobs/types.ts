// The jobs service's answers, as docs/jobs.md, evaluation.md, batches.md and
// data-generation.md give them (through the gateway).

export const JOB_TYPES = ["chat", "batch", "eval", "generate", "data_gen"] as const;
export const JOB_STATUSES = ["pending", "running", "done", "failed", "cancelled"] as const;

export interface Progress {
  total: number;
  done: number;
  failed: number;
  fraction: number;
  rate: number | null; // finished items per second since the start
  eta_seconds: number | null;
}

export interface Job {
  id: string;
  type: string;
  owner: string;
  team: string | null;
  model: string | null;
  status: string;
  total: number;
  done: number;
  failed: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
  spec: Record<string, unknown>;
  result: Record<string, unknown> | null;
  progress: Progress;
}

export interface JobStats {
  pending: number;
  running: number;
  done: number;
  failed: number;
  jobs_last_hour: number;
}

export interface EvalResult {
  name?: string;
  accuracy: number | null;
  total_samples: number;
  correct: number;
  failed: number;
  avg_loss: number | null;
  loss_samples: number;
  examples: string | null; // the per-example log in the platform store (s3://…)
}

export interface EvalJob {
  job_id: string;
  type: string;
  name: string;
  model_id: string | null;
  status: string;
  dataset_ref: string;
  dataset: string;
  budget: number | null;
  algorithm: string | null;
  progress: Progress;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
  result: EvalResult | null;
}

export interface ItemError {
  code: string;
  message: string;
}

export interface EvalExample {
  index: number;
  line?: number;
  id?: unknown;
  expected?: string;
  completion?: string;
  answer?: string | null;
  correct?: boolean;
  loss?: number | null;
  tokens?: number | null;
  error: ItemError | null;
}

export interface EvalExamplePage {
  job_id: string;
  total: number;
  offset: number;
  examples: EvalExample[];
}

export interface Batch {
  id: string;
  endpoint: string;
  model: string | null;
  status: string;
  input_file_id: string;
  output_file_id: string | null;
  error_file_id: string | null;
  request_counts: { total: number; completed: number; failed: number };
  errors: { data: { code: string; message: string; line?: number | null }[] } | null;
  metadata: Record<string, string> | null;
  usage: { input_tokens?: number; output_tokens?: number; total_tokens?: number } | null;
  created_at: number; // Unix seconds, as OpenAI's
  in_progress_at: number | null;
  completed_at: number | null;
  cancelled_at: number | null;
}

export interface Shard {
  name: string;
  key: string;
  uri: string;
  examples: number;
  bytes: number;
}

export interface DataGenJob {
  job_id: string;
  status: string;
  model_id: string | null;
  strategy: string;
  config: Record<string, unknown>;
  output_uri: string;
  seed_set: { source: string; count: number };
  examples: number | null; // set once the job has ended and its shards are written
  short: boolean | null;
  shards: Shard[];
  rejected: Record<string, number>;
  items_failed: number | null;
  resumes: number;
}

export interface UploadedFile {
  id: string;
  filename: string;
  bytes: number;
}

export function isActive(status: string): boolean {
  return status === "pending" || status === "running";
}
