// Loading what a page shows: its state while it loads, the platform's error in words,
// and a way to load it again.

import { useCallback, useEffect, useState } from "react";
import type { ReactNode } from "react";
import { messageOf } from "../api";

export interface Loaded<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [turn, setTurn] = useState(0);
  const reload = useCallback(() => {
    setLoading(true);
    setTurn((n) => n + 1);
  }, []);
  useEffect(() => {
    const controller = new AbortController();
    load(controller.signal)
      .then((found) => {
        setData(found);
        setError(null);
      })
      .catch((failure: unknown) => {
        if (!controller.signal.aborted) setError(messageOf(failure));
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps -- the caller lists what `load` reads
  }, [...deps, turn]);
  return { data, error, loading, reload };
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
