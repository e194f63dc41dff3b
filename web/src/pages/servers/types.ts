// The gateway's answers about servers (GET /status, /status/{id}, /status/{id}/events).

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  last_transition_time: string | null;
}

export interface Server {
  server_id: string;
  name: string;
  namespace: string;
  owner: string | null;
  team: string | null;
  model: string | null;
  model_id: string | null;
  runtime: string;
  replicas: number;
  ready_replicas: number;
  desired_replicas: number | null;
  status: string;
  message: string;
  state: string | null;
  endpoint: string;
  created: string | null;
  model_version: string | null;
  conditions: Condition[];
}

export interface ServerEvent {
  type: string;
  reason: string;
  message: string;
  object: string;
  count: number;
  first_seen: string | null;
  last_seen: string | null;
  source: string;
}

// The CRD's bounds of spec.replicas (POST /scale/{id} refuses others).
export const MAX_REPLICAS = 100;


// What the server runs now: the operator's number (the autoscaler's with autoscaling),
// else what its spec asks for.
export function desired(server: Server): number {
  return server.desired_replicas ?? server.replicas;
}

export function when(value: string | null): string {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toLocaleString();
}

export function ownerOf(server: Server): string {
  if (!server.owner) return "—";
  return server.team ? `${server.owner} (${server.team})` : server.owner;
}
