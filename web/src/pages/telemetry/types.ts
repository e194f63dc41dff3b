// The answers of GET /gpu, GET /settings/power_profile, GET /system, GET /version and
// GET /info, as docs/gpus.md and docs/operations-api.md describe them (and the gateway's
// gpus/ and operations/ packages build them).

export interface GpuFigures {
  index: number;
  uuid: string | null;
  name: string | null;
  driver_version: string | null;
  memory_total_mb: number | null;
  memory_used_mb: number | null;
  utilization_gpu: number | null;
  utilization_mem: number | null;
  temperature_gpu: number | null;
  power_draw_w: number | null;
  power_limit_w: number | null;
  fan_speed_pct: number | null;
  // What nvidia-smi printed instead of a figure it does not give ("[N/A]"), by field.
  unavailable: Record<string, string>;
}

export interface Allocation {
  // All null for what the caller may not see: counted, not named.
  namespace: string | null;
  server: string | null;
  server_id: string | null;
  pod: string | null;
  gpus: number;
}

export interface GpuNode {
  node: string;
  gpu_type: string | null;
  capacity: number;
  allocatable: number;
  allocated: number;
  free: number;
  allocations: Allocation[];
  live: GpuFigures[] | null;
  live_source: string;
}

export interface GpuType {
  gpu_type: string | null;
  nodes: string[];
  capacity: number;
  allocatable: number;
  allocated: number;
}

export interface GpuInventory {
  totals: {
    nodes: number;
    capacity: number;
    allocatable: number;
    allocated: number;
    gpus_with_live_figures: number;
  };
  types: GpuType[];
  nodes: GpuNode[];
}

export interface PowerProfile {
  power_limit_w: number;
  max_concurrent_jobs: number;
  description: string;
}

export interface PowerResult {
  index: number;
  uuid: string | null;
  result: string;
  limit_w: number | null;
  message: string | null;
}

export interface PowerApplied {
  node: string;
  reported_at: string;
  // Absent when the agent reports no power settings (then only `message`).
  profile?: string | null;
  chosen?: boolean;
  target_w?: number | null;
  enabled?: boolean;
  gpus?: PowerResult[];
  message: string | null;
}

export interface PowerView {
  current: string;
  chosen: boolean;
  profiles: Record<string, PowerProfile>;
  max_concurrent_jobs: number;
  applied: PowerApplied[];
  applied_note: string | null;
}

export interface Resources {
  cpu: number;
  memory: number;
  "nvidia.com/gpu": number;
}

export interface SystemNode {
  name: string;
  ready: boolean;
  unschedulable: boolean;
  gpu_product: string | null;
  capacity: Resources;
  allocatable: Resources;
  requests: Resources | null;
  pods: number | null;
}

export interface GatewayHost {
  cpu_load: number;
  cpu_count: number | null;
  ram_used_gb: number;
  ram_total_gb: number;
  ram_percent: number;
  disk: { mount: string; used_gb: number; total_gb: number; percent: number }[];
}

export interface PlatformPod {
  name: string;
  namespace: string;
  component: string | null;
  node: string | null;
  phase: string | null;
  ready: boolean;
  restarts: number;
  started: string | null;
}

export interface GatewayProcess {
  pid: number;
  rss_bytes: number | null;
  cpu_seconds: number;
  open_fds: number;
  threads: number;
  uptime_seconds: number;
}

export interface SystemView {
  nodes: SystemNode[];
  gateway_host: GatewayHost | null;
  // Admins only; null for everyone else.
  platform: {
    namespaces: string[];
    gateway_process: GatewayProcess | null;
    pods: PlatformPod[] | null;
  } | null;
  unavailable: Record<string, string>;
}

export interface VersionView {
  api_version: string;
  platform_version: string;
  python_version: string;
  kubernetes_version: string; // "unavailable" when it could not be read
  runtime_images: { image: string; runtime: string | null; deployments: number }[] | string;
  unavailable: Record<string, string>;
}

export interface InfoView {
  api_version: string;
  platform_version: string;
  auth: { modes: string[]; token_algorithm: string; token_expiry_minutes: number };
  cluster: {
    connected: boolean;
    default_namespace: string;
    watch_namespaces: string[] | string;
    platform_namespaces: string[];
    ingress_url: string | null;
  };
  services: Record<string, boolean>;
}
