// Loading what a page shows: its state while it loads, the platform's error in words,
// and ways to load it again: `reload` (now, after a change) and `refresh` (a polling
// tick: skipped while a load is under way or the tab is hidden, so a slow answer is
// never cut off by the next tick).

import { useCallback, useEffect, useRef, useState } from "react";
import type { ReactNode } from "react";
import { ApiError, messageOf } from "../api";

export interface Loaded<T> {
  data: T | null;
  error: string | null;
  status: number | null; // the platform's HTTP status of the last failure
  loading: boolean;
  reload: () => void;
  refresh: () => void;
}

export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<number | null>(null);
  const [loading, setLoading] = useState(true);
  const [turn, setTurn] = useState(0);
  const busy = useRef(false);
  const reload = useCallback(() => {
    setLoading(true);
    setTurn((n) => n + 1);
  }, []);
  const refresh = useCallback(() => {
    if (busy.current || document.hidden) return;
    setTurn((n) => n + 1);
  }, []);
  useEffect(() => {
    const controller = new AbortController();
    busy.current = true;
    load(controller.signal)
      .then((found) => {
        setData(found);
        setError(null);
        setStatus(null);
      })
      .catch((failure: unknown) => {
        if (controller.signal.aborted) return;
        setError(messageOf(failure));
        setStatus(failure instanceof ApiError ? failure.status : null);
      })
      .finally(() => {
        if (controller.signal.aborted) return;
        setLoading(false);
        busy.current = false;
      });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps -- the caller lists what `load` reads
  }, [...deps, turn]);
  return { data, error, status, loading, reload, refresh };
}

export function ErrorNote({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {error}
    </p>
  );
}

export function Loading({ loading, children }: { loading: boolean; children?: ReactNode }) {
  return loading ? (
    <p className="muted" role="status" aria-live="polite">
      {children ?? "Loading…"}
    </p>
  ) : null;
}
