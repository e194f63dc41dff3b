// What the page reads: today's and this month's totals and the per-day series (one
// request for the whole series), for whom the page shows; their limits apart.

import { api } from "../../api";
import type {
  DailyUsage,
  LimitsView,
  MyContract,
  SubjectLimits,
  UsageReport,
  UsageView,
  Whose,
} from "./types";

export function whoseQuery(whose: Whose): { user?: string; team?: string } {
  if (whose.kind === "user") return { user: whose.name };
  if (whose.kind === "team") return { team: whose.name };
  return {};
}

export async function loadUsage(whose: Whose, days: number, signal: AbortSignal): Promise<UsageView> {
  const query = whoseQuery(whose);
  const [day, month, daily] = await Promise.all([
    api<UsageReport>("/usage", { query: { period: "day", ...query }, signal }),
    api<UsageReport>("/usage", { query: { period: "month", ...query }, signal }),
    api<DailyUsage>("/usage/daily", { query: { days, ...query }, signal }),
  ]);
  return { day, month, daily };
}

export async function loadLimits(whose: Whose, signal: AbortSignal): Promise<LimitsView> {
  if (whose.kind === "me") return { mine: await api<MyContract>("/contracts/me", { signal }) };
  return { picked: await api<SubjectLimits>("/contracts/limits", { query: whoseQuery(whose), signal }) };
}
