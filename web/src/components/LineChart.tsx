// A small line chart in SVG: time on the x axis, one line per series, a few ticks on each
// axis and a legend. For screen readers it is one image whose label gives each series'
// latest value, and a visually hidden table of those values. The x axis reads as a clock
// (minutes of the telemetry) or, with `axis="days"`, as UTC days (usage per day).

import "./LineChart.css";

export type Point = [t: number, value: number]; // t: ms since the epoch

export interface Series {
  label: string;
  points: Point[]; // in time order
}

export interface LineChartProps {
  title: string;
  series: Series[];
  unit: string; // after each value: "%", " MiB", ""
  from: number; // the x axis, ms since the epoch
  to: number;
  yMin?: number; // default 0
  yMax?: number; // default: a round number above the largest value
  maxGapMs?: number; // a line is broken where two points are further apart
  format?: (value: number) => string;
  axis?: "clock" | "days"; // default "clock"
}

const WIDTH = 640;
const HEIGHT = 220;
const PAD = { left: 52, right: 12, top: 10, bottom: 28 };
// A time label is about this wide: one closer than half of it to the right edge ends
// there instead of being cut off.
const LABEL_HALF = 32;

function tickAnchor(at: number): "middle" | "end" {
  return at > WIDTH - LABEL_HALF ? "end" : "middle";
}
const COLOURS = ["#1d4ed8", "#b45309", "#047857", "#9333ea", "#be123c", "#0e7490", "#4d7c0f", "#6b7280"];
const DASHES = ["", "6 3", "2 3", "8 3 2 3"];

function defaultFormat(value: number): string {
  return Math.abs(value) >= 100 ? value.toFixed(0) : Number(value.toFixed(2)).toString();
}

// Round tick values from min to max, about `count` of them.
export function niceTicks(min: number, max: number, count: number): number[] {
  if (!(max > min)) return [min];
  const rough = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? rough;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function niceMax(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return ([1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= value) ?? value);
}

const TIME_STEPS_MS = [10, 15, 30, 60, 120, 300, 600, 1800, 3600].map((s) => s * 1000);
const DAY_MS = 86_400_000;
const DAY_STEPS_MS = [1, 2, 7, 14, 28].map((d) => d * DAY_MS);

function timeTicks(from: number, to: number, days: boolean): number[] {
  const span = to - from;
  if (days && span < DAY_MS) return [from];
  const step = (days ? DAY_STEPS_MS : TIME_STEPS_MS).find((s) => span / s <= 5) ?? span;
  const ticks: number[] = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) ticks.push(t);
  return ticks;
}

function clock(t: number, seconds: boolean): string {
  return new Date(t).toLocaleTimeString(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    second: seconds ? "2-digit" : undefined,
  });
}

function utcDay(t: number): string {
  return new Date(t).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
}

// A series' points split where two are further apart than maxGapMs.
function segments(points: Point[], maxGapMs: number | undefined): Point[][] {
  const found: Point[][] = [];
  let current: Point[] = [];
  let last: number | null = null;
  for (const point of points) {
    if (last !== null && maxGapMs !== undefined && point[0] - last > maxGapMs) {
      found.push(current);
      current = [];
    }
    current.push(point);
    last = point[0];
  }
  if (current.length) found.push(current);
  return found;
}

export function LineChart({
  title,
  series,
  unit,
  from,
  to,
  yMin = 0,
  yMax,
  maxGapMs,
  format = defaultFormat,
  axis = "clock",
}: LineChartProps) {
  const visible = series.map((s) => ({ ...s, points: s.points.filter(([t]) => t >= from && t <= to) }));
  const values = visible.flatMap((s) => s.points.map(([, v]) => v));
  const highest = Math.max(yMin, ...values);
  const top = yMax ?? (highest > yMin ? niceMax(highest) : yMin + 1);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const span = Math.max(1, to - from);
  const x = (t: number) => PAD.left + ((t - from) / span) * plotW;
  const y = (v: number) =>
    PAD.top + plotH - ((Math.min(Math.max(v, yMin), top) - yMin) / (top - yMin || 1)) * plotH;
  const latest = series.map((s) => ({ label: s.label, point: s.points[s.points.length - 1] }));
  const shown = (value: number) => `${format(value)}${unit}`;
  const summary =
    latest.length === 0
      ? `${title}: no figures yet`
      : `${title}, latest: ${latest
          .map(({ label, point }) => `${label} ${point ? shown(point[1]) : "no figure"}`)
          .join("; ")}`;
  const days = axis === "days";
  const xTicks = timeTicks(from, to, days);
  const withSeconds = to - from < 120_000;
  const at = (t: number, seconds: boolean) => (days ? utcDay(t) : clock(t, seconds));

  return (
    <figure className="line-chart">
      <figcaption>{title}</figcaption>
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-label={summary}
        preserveAspectRatio="xMidYMid meet"
      >
        {niceTicks(yMin, top, 4).map((tick) => (
          <g key={`y${tick}`}>
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y(tick)} y2={y(tick)} className="grid" />
            <text x={PAD.left - 6} y={y(tick)} dy="0.32em" textAnchor="end">
              {shown(tick)}
            </text>
          </g>
        ))}
        {xTicks.map((tick) => (
          <g key={`x${tick}`}>
            <line x1={x(tick)} x2={x(tick)} y1={PAD.top + plotH} y2={PAD.top + plotH + 4} className="axis" />
            <text x={x(tick)} y={HEIGHT - 8} textAnchor={tickAnchor(x(tick))}>
              {at(tick, withSeconds)}
            </text>
          </g>
        ))}
        {values.length === 0 && (
          <text x={PAD.left + plotW / 2} y={PAD.top + plotH / 2} textAnchor="middle" className="empty">
            No figures in this time yet
          </text>
        )}
        <line x1={PAD.left} x2={PAD.left} y1={PAD.top} y2={PAD.top + plotH} className="axis" />
        <line
          x1={PAD.left}
          x2={WIDTH - PAD.right}
          y1={PAD.top + plotH}
          y2={PAD.top + plotH}
          className="axis"
        />
        {visible.map((s, i) => {
          const colour = COLOURS[i % COLOURS.length];
          const dash = DASHES[Math.floor(i / COLOURS.length) % DASHES.length] || undefined;
          return (
            <g key={s.label} stroke={colour} fill={colour}>
              {segments(s.points, maxGapMs).map((part) =>
                part.length === 1 && part[0] ? (
                  <circle key={part[0][0]} cx={x(part[0][0])} cy={y(part[0][1])} r={2.5} stroke="none" />
                ) : (
                  <polyline
                    key={part[0]?.[0] ?? 0}
                    points={part.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}
                    fill="none"
                    strokeWidth={2}
                    strokeDasharray={dash}
                    strokeLinejoin="round"
                  />
                ),
              )}
            </g>
          );
        })}
      </svg>
      {series.length > 0 && (
        <ul className="legend" aria-hidden="true">
          {latest.map(({ label, point }, i) => (
            <li key={label}>
              <svg width="24" height="10" aria-hidden="true" focusable="false">
                <line
                  x1="0"
                  x2="24"
                  y1="5"
                  y2="5"
                  stroke={COLOURS[i % COLOURS.length]}
                  strokeWidth={3}
                  strokeDasharray={DASHES[Math.floor(i / COLOURS.length) % DASHES.length] || undefined}
                />
              </svg>
              {label}: {point ? shown(point[1]) : "no figure"}
            </li>
          ))}
        </ul>
      )}
      <table className="visually-hidden">
        <caption>{title}: latest values</caption>
        <thead>
          <tr>
            <th scope="col">Series</th>
            <th scope="col">Latest value</th>
            <th scope="col">At</th>
          </tr>
        </thead>
        <tbody>
          {latest.map(({ label, point }) => (
            <tr key={label}>
              <th scope="row">{label}</th>
              <td>{point ? shown(point[1]) : "no figure"}</td>
              <td>{point ? at(point[0], true) : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
