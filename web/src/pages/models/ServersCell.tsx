// The servers of a model name and where each stands in its rollout.

import type { ServerVersion } from "./types";

export function ServersList({ servers }: { servers: ServerVersion[] }) {
  if (servers.length === 0) return <span className="muted">none of yours serve it</span>;
  return (
    <ul className="plain">
      {servers.map((server) => (
        <li key={server.server_id}>
          <strong>{server.name}</strong> <span className="muted">({server.namespace})</span>: runs{" "}
          {server.version ?? "—"}
          {server.wanted_version && server.wanted_version !== server.version && `, wants ${server.wanted_version}`}
          {server.rollout && (
            <>
              {" · "}
              <span className={`rollout rollout-${server.rollout.phase.toLowerCase()}`}>{server.rollout.phase}</span>
              {server.rollout.phase === "RolledBack" &&
                ` (${server.rollout.reason}${server.rollout.message ? `: ${server.rollout.message}` : ""})`}
            </>
          )}
          {server.error && <div className="error-text">Not changed: {server.error}</div>}
        </li>
      ))}
    </ul>
  );
}
