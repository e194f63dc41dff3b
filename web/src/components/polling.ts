// Reload every few seconds while `live` (a job or a rollout still moving), as the Servers
// page does.

import { useEffect } from "react";

export const REFRESH_MS = 3000;

export function usePolling(live: boolean, reload: () => void, every = REFRESH_MS): void {
  useEffect(() => {
    if (!live) return;
    const timer = window.setInterval(reload, every);
    return () => window.clearInterval(timer);
  }, [live, reload, every]);
}
