// Requests and tokens per UTC day (GET /usage/daily: the whole series in one answer),
// as charts and, for reading figure by figure, as a table.

import { LineChart } from "../../components/LineChart";
import type { Point } from "../../components/LineChart";
import { count, dayName, dayStart } from "./format";
import type { DailyUsage } from "./types";

export function Charts({ daily }: { daily: DailyUsage }) {
  const points = (pick: (d: DailyUsage["series"][number]) => number): Point[] =>
    daily.series.map((d) => [dayStart(d.day), pick(d)]);
  const from = dayStart(daily.since);
  const to = dayStart(daily.until);
  // Counts are whole: below 4 the axis would read 0.5, 1.5; from 0 to 4 it reads 1, 2, 3.
  const wholeTop = (values: number[]) => (Math.max(0, ...values) < 4 ? 4 : undefined);
  return (
    <>
      <p className="muted">
        {dayName(daily.since)} to {dayName(daily.until)} (UTC days): {count(daily.requests)} requests,{" "}
        {count(daily.prompt_tokens + daily.completion_tokens)} tokens.
      </p>
      <div className="usage-charts">
        <LineChart
          title="Requests per day"
          series={[{ label: "Requests", points: points((d) => d.requests) }]}
          unit=""
          from={from}
          to={to}
          yMax={wholeTop(daily.series.map((d) => d.requests))}
          axis="days"
          format={count}
        />
        <LineChart
          title="Tokens per day"
          series={[
            { label: "Prompt tokens", points: points((d) => d.prompt_tokens) },
            { label: "Completion tokens", points: points((d) => d.completion_tokens) },
          ]}
          unit=""
          from={from}
          to={to}
          yMax={wholeTop(daily.series.flatMap((d) => [d.prompt_tokens, d.completion_tokens]))}
          axis="days"
          format={count}
        />
      </div>
      <details className="usage-days">
        <summary>Figures per day</summary>
        <div className="usage-scroll">
          <table>
            <caption className="visually-hidden">Requests and tokens per UTC day</caption>
            <thead>
              <tr>
                <th scope="col">Day</th>
                <th scope="col">Requests</th>
                <th scope="col">Prompt tokens</th>
                <th scope="col">Completion tokens</th>
              </tr>
            </thead>
            <tbody>
              {[...daily.series].reverse().map((d) => (
                <tr key={d.day}>
                  <th scope="row">{dayName(d.day)}</th>
                  <td>{count(d.requests)}</td>
                  <td>{count(d.prompt_tokens)}</td>
                  <td>{count(d.completion_tokens)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </>
  );
}
