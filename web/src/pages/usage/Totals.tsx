// Today's and this month's totals (UTC), side by side.

import { count, dayName } from "./format";
import type { UsageReport } from "./types";

function Period({ id, title, report }: { id: string; title: string; report: UsageReport }) {
  return (
    <section className="usage-period" aria-labelledby={id}>
      <h3 id={id}>{title}</h3>
      <dl className="usage-figures">
        <div>
          <dt>Requests</dt>
          <dd>{count(report.requests)}</dd>
        </div>
        <div>
          <dt>Prompt tokens</dt>
          <dd>{count(report.prompt_tokens)}</dd>
        </div>
        <div>
          <dt>Completion tokens</dt>
          <dd>{count(report.completion_tokens)}</dd>
        </div>
        <div>
          <dt>Tokens in all</dt>
          <dd>{count(report.prompt_tokens + report.completion_tokens)}</dd>
        </div>
      </dl>
    </section>
  );
}

export function Totals({ day, month }: { day: UsageReport; month: UsageReport }) {
  return (
    <div className="usage-totals">
      <Period id="usage-today" title={`Today (${dayName(day.since)}, UTC)`} report={day} />
      <Period id="usage-month" title={`This month (since ${dayName(month.since)})`} report={month} />
    </div>
  );
}
