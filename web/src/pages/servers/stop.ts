// Stopping a server (DELETE /stop/{id}), after the person said yes.

import { api } from "../../api";
import type { Server } from "./types";

// Whether it was stopped (false: they changed their mind). Errors are the caller's to show.
export async function stopServer(server: Server): Promise<boolean> {
  if (!window.confirm(`Stop ${server.name}? Its pods and route are deleted.`)) return false;
  await api(`/stop/${encodeURIComponent(server.server_id)}`, { method: "DELETE" });
  return true;
}
