// What the last set_active did: the version now active, the one before, and the servers
// it rolls (their live phase is in the active versions' table).

import type { Activation, ServerVersion } from "./types";
import { ServersList } from "./ServersCell";

export function ActivationNote({ activation, servers }: { activation: Activation; servers: ServerVersion[] }) {
  return (
    <div className="notice" role="status">
      <p>
        {activation.changed ? (
          <>
            <strong>{activation.id}</strong> is now the active version of <strong>{activation.name}</strong>
            {activation.previous ? ` (was ${activation.previous.id})` : ""}.
          </>
        ) : (
          <>
            <strong>{activation.id}</strong> was the active version of <strong>{activation.name}</strong> already.
          </>
        )}
      </p>
      <p>Servers of that name and their rollout (live while one is in progress):</p>
      <ServersList servers={servers} />
    </div>
  );
}
