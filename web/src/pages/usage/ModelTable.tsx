// Usage per model: today's and this month's, one row a model used this month.

import { count } from "./format";
import type { ModelUsage, UsageReport } from "./types";

interface Row {
  model: string;
  day: ModelUsage | null;
  month: ModelUsage;
}

function rows(day: UsageReport, month: UsageReport): Row[] {
  const today = new Map(day.models.map((m) => [m.model, m]));
  return month.models.map((m) => ({ model: m.model, day: today.get(m.model) ?? null, month: m }));
}

export function ModelTable({ day, month }: { day: UsageReport; month: UsageReport }) {
  const found = rows(day, month);
  if (found.length === 0) return <p className="muted">No model was used this month.</p>;
  return (
    <div className="usage-scroll">
      <table>
        <caption className="visually-hidden">Usage per model, today and this month</caption>
        <thead>
          <tr>
            <th scope="col">Model</th>
            <th scope="col">Requests today</th>
            <th scope="col">Tokens today</th>
            <th scope="col">Requests this month</th>
            <th scope="col">Prompt tokens this month</th>
            <th scope="col">Completion tokens this month</th>
          </tr>
        </thead>
        <tbody>
          {found.map(({ model, day: today, month: m }) => (
            <tr key={model}>
              <th scope="row">{model}</th>
              <td>{count(today?.requests ?? 0)}</td>
              <td>{count((today?.prompt_tokens ?? 0) + (today?.completion_tokens ?? 0))}</td>
              <td>{count(m.requests)}</td>
              <td>{count(m.prompt_tokens)}</td>
              <td>{count(m.completion_tokens)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
