// Numbers and days as the page writes them.

export function count(value: number): string {
  return value.toLocaleString();
}

export function limit(value: number | null | undefined): string {
  return value === null || value === undefined ? "no limit" : value.toLocaleString();
}

// A UTC day (YYYY-MM-DD) as ms since the epoch, at its midnight.
export function dayStart(day: string): number {
  return Date.parse(`${day}T00:00:00Z`);
}

export function dayName(day: string): string {
  return new Date(dayStart(day)).toLocaleDateString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    timeZone: "UTC",
  });
}
