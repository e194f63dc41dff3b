// Refresh what a view shows every few seconds while `live` (a job or a rollout still
// moving, a server's page open). Give it a `refresh` of useLoad: a tick is skipped while
// the last load is under way or the tab is hidden.

import { useEffect } from "react";

export const REFRESH_MS = 3000;

export function usePolling(live: boolean, refresh: () => void, every = REFRESH_MS): void {
  useEffect(() => {
    if (!live) return;
    const timer = window.setInterval(refresh, every);
    return () => window.clearInterval(timer);
  }, [live, refresh, every]);
}
