// One page of a list the platform paginates on the server: the rows, and how many there
// are in all (its X-Total-Count header).

import { send } from "../api";

type Query = Record<string, string | number | undefined>;

export interface Page<T> {
  items: T[];
  total: number;
}

export async function loadPage<T>(path: string, query: Query, signal: AbortSignal): Promise<Page<T>> {
  const response = await send(path, { query, signal });
  const items = (await response.json()) as T[];
  const header = response.headers.get("X-Total-Count");
  const total = header === null ? Number.NaN : Number(header);
  return { items, total: Number.isFinite(total) ? total : items.length };
}
