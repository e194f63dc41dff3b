// How the telemetry pages write figures.

const GIB = 1024 ** 3;

export function round(value: number, digits = 1): string {
  return Number(value.toFixed(digits)).toLocaleString();
}

export function gib(bytes: number): string {
  return `${round(bytes / GIB)} GiB`;
}

export function cores(value: number): string {
  return `${round(value, 2)} cores`;
}

export function percentOf(part: number, whole: number): string {
  return whole > 0 ? `${round((100 * part) / whole, 0)} %` : "–";
}

export function when(time: number | null): string {
  return time === null ? "" : new Date(time).toLocaleTimeString();
}

export function duration(seconds: number): string {
  if (seconds < 120) return `${round(seconds, 0)} s`;
  if (seconds < 7200) return `${round(seconds / 60, 0)} min`;
  if (seconds < 172800) return `${round(seconds / 3600, 1)} h`;
  return `${round(seconds / 86400, 1)} days`;
}

// A `live_source` that starts with "none: " says why there are no figures.
export function whyNoFigures(liveSource: string): string {
  const reason = liveSource.replace(/^none:\s*/, "");
  return reason.charAt(0).toUpperCase() + reason.slice(1);
}
