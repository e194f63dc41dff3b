// The gateway's answers about usage and limits (the contract service's, passed through:
// docs/contract.md).

export interface ModelUsage {
  model: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
}

export interface UsageReport {
  user: string | null;
  team: string | null;
  period: "day" | "month";
  since: string; // YYYY-MM-DD, a UTC day
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  models: ModelUsage[];
}

export interface DayUsage {
  day: string; // YYYY-MM-DD, a UTC day
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
}

export interface DailyUsage {
  user: string | null;
  team: string | null;
  days: number;
  since: string;
  until: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  series: DayUsage[];
}

// What a contract sets; null or missing: no limit (for lists: anything).
export interface Limits {
  models?: string[] | null;
  max_replicas?: number | null;
  max_gpus?: number | null;
  max_servers?: number | null;
  max_budget?: number | null;
  requests_per_minute?: number | null;
  tokens_per_minute?: number | null;
  token_budget?: number | null;
  budget_period?: "day" | "month" | null;
  downloads?: boolean | null;
}

export interface MyContract {
  user: string;
  limits: Limits;
  team: string | null; // the team one acts for by default
  team_limits: Limits | null;
}

// The limits that hold for a user (their contract over the defaults) or a team (its
// contract; null: it has none).
export interface SubjectLimits {
  user: string | null;
  team: string | null;
  limits: Limits | null;
}

// The limits the page shows: the caller's own and default team's, or those of whom they picked.
export type LimitsView = { mine: MyContract } | { picked: SubjectLimits };

// Whose usage the page shows.
export type Whose = { kind: "me" } | { kind: "user"; name: string } | { kind: "team"; name: string };

export interface UsageView {
  day: UsageReport;
  month: UsageReport;
  daily: DailyUsage;
}
