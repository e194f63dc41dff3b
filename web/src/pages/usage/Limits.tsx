// The contract's limits against what was used: the caller's own (their contract over the
// defaults) and their default team's (GET /contracts/me), or those of the user or team
// picked (GET /contracts/limits: a user's contract over the defaults, a team's own).

import { count, limit } from "./format";
import type { Limits, LimitsView, UsageReport, Whose } from "./types";

interface Scope {
  title: string; // "Your limits", "Team nlp's limits"
  limits: Limits;
  // The usage the token budget is counted against, where the page has it.
  used: { day: UsageReport; month: UsageReport } | null;
}

// The scopes whose limits apply to what the page shows, and a note where there are none.
export function scopesOf(
  view: LimitsView,
  whose: Whose,
  usage: { day: UsageReport; month: UsageReport },
  isAdmin: boolean,
): { scopes: Scope[]; note: string | null } {
  if ("mine" in view) {
    const contract = view.mine;
    const scopes: Scope[] = [{ title: "Your limits", limits: contract.limits, used: usage }];
    if (contract.team && contract.team_limits) {
      scopes.push({ title: `Team ${contract.team}'s limits`, limits: contract.team_limits, used: null });
    }
    // The contract service decides every request of an admin "admins are not limited".
    const note = isAdmin
      ? "You are an admin: no contract limits you. The limits below are what would hold without the admin role."
      : null;
    return { scopes, note };
  }
  const { limits } = view.picked;
  const who = whose.kind === "user" ? `User ${whose.name}` : whose.kind === "team" ? `Team ${whose.name}` : "";
  if (!limits) return { scopes: [], note: `${who} has no contract of its own: no team limits.` };
  return { scopes: [{ title: `${who}'s limits`, limits, used: usage }], note: null };
}

function Budget({ scope }: { scope: Scope }) {
  const { limits, used } = scope;
  const period = limits.budget_period ?? "month";
  const report = used ? (period === "day" ? used.day : used.month) : null;
  const spent = report ? report.prompt_tokens + report.completion_tokens : null;
  const budget = limits.token_budget ?? null;
  return (
    <tr>
      <th scope="row">Tokens per {period === "day" ? "day (UTC)" : "month (UTC)"}</th>
      <td>{limit(budget)}</td>
      <td>
        {spent === null ? (
          <span className="muted">not shown here</span>
        ) : budget === null ? (
          count(spent)
        ) : (
          <span className="usage-meter">
            {count(spent)} of {count(budget)}
            <progress
              max={Math.max(budget, 1)}
              value={Math.min(spent, Math.max(budget, 1))}
              aria-label={`Tokens used this ${period}: ${count(spent)} of ${count(budget)}`}
            />
          </span>
        )}
      </td>
    </tr>
  );
}

function LimitsTable({ scope }: { scope: Scope }) {
  const { limits } = scope;
  const other: [string, string][] = [
    ["Servers at once", limit(limits.max_servers)],
    ["GPUs in all servers", limit(limits.max_gpus)],
    ["Replicas per server", limit(limits.max_replicas)],
    ["Scaling budget per request", limit(limits.max_budget)],
    ["Models", limits.models ? limits.models.join(", ") || "none" : "any model"],
    ["Downloads", limits.downloads === false ? "not allowed" : limits.downloads ? "allowed" : "not set"],
  ];
  return (
    <div className="usage-scroll">
      <table className="usage-limits">
        <caption>{scope.title}</caption>
        <thead>
          <tr>
            <th scope="col">Limit</th>
            <th scope="col">Contract</th>
            <th scope="col">Used</th>
          </tr>
        </thead>
        <tbody>
          <tr>
            <th scope="row">Requests per minute</th>
            <td>{limit(limits.requests_per_minute)}</td>
            <td className="muted">counted per minute</td>
          </tr>
          <tr>
            <th scope="row">Tokens per minute</th>
            <td>{limit(limits.tokens_per_minute)}</td>
            <td className="muted">counted per minute</td>
          </tr>
          <Budget scope={scope} />
          {other.map(([what, value]) => (
            <tr key={what}>
              <th scope="row">{what}</th>
              <td>{value}</td>
              <td />
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function LimitsPanel({ scopes, note }: { scopes: Scope[]; note: string | null }) {
  return (
    <>
      {note && <p className="notice">{note}</p>}
      {scopes.map((scope) => (
        <LimitsTable key={scope.title} scope={scope} />
      ))}
    </>
  );
}
