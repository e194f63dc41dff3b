// A server's phase (the operator's) and loading state (the gateway's), as words with colour.

const STATE_TITLES: Record<string, string> = {
  loaded: "loaded: it answers now",
  loading: "loading: replicas are starting",
  sleeping: "sleeping: the first request wakes it",
  unavailable: "unavailable: it takes no request",
};

export function Phase({ phase }: { phase: string }) {
  return <span className={`phase phase-${phase.toLowerCase()}`}>{phase}</span>;
}

export function LoadState({ state }: { state: string | null }) {
  if (!state) return <span className="muted">—</span>;
  return (
    <span className={`sv-state sv-state-${state}`} title={STATE_TITLES[state] ?? state}>
      {state}
    </span>
  );
}
