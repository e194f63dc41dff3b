// Reload what a view shows every few seconds while it is open.

import { useEffect } from "react";
import { REFRESH_MS } from "./types";

export function useEvery(reload: () => void, every = REFRESH_MS): void {
  useEffect(() => {
    const timer = window.setInterval(reload, every);
    return () => window.clearInterval(timer);
  }, [reload, every]);
}
