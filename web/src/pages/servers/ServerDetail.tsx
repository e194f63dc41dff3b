// One server (#/servers/<id>): its phase, message, loading state and replicas, the
// operator's conditions and the cluster's events, kept current while open; scale; stop.

import { useState } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { href } from "../../route";
import { LoadState, Phase } from "./Badges";
import { Conditions } from "./Conditions";
import { Events } from "./Events";
import { usePolling } from "../../components/polling";
import { ScaleForm } from "./ScaleForm";
import { stopServer } from "./stop";
import { desired, ownerOf, when } from "./types";
import type { Server } from "./types";

export function ServerDetail({ id }: { id: string }) {
  const server = useLoad(
    (signal) => api<Server>(`/status/${encodeURIComponent(id)}`, { signal }),
    [id],
  );
  const [error, setError] = useState<string | null>(null);
  // A server that is gone (404: stopped, or never the caller's) is not asked again.
  usePolling(server.status !== 404, server.refresh);
  const data = server.data;

  async function stop(found: Server) {
    setError(null);
    try {
      if (await stopServer(found)) window.location.hash = href("servers");
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  return (
    <section aria-labelledby="sv-title" className="sv-detail">
      <p>
        <a href={href("servers")}>← All servers</a>
      </p>
      <h2 id="sv-title">{data ? data.name : `Server ${id}`}</h2>
      <ErrorNote error={error ?? server.error} />
      <Loading loading={server.loading && !data} />
      {data && (
        <>
          <dl className="sv-fields">
            <div>
              <dt>Phase</dt>
              <dd>
                <Phase phase={data.status} />
                {data.message && <div className="sv-message">{data.message}</div>}
              </dd>
            </div>
            <div>
              <dt>State</dt>
              <dd>
                <LoadState state={data.state} />
              </dd>
            </div>
            <div>
              <dt>Replicas</dt>
              <dd>
                {data.ready_replicas} / {desired(data)} ready
                {desired(data) !== data.replicas && (
                  <div className="muted">{data.replicas} in its spec</div>
                )}
              </dd>
            </div>
            <div>
              <dt>Model</dt>
              <dd>
                {data.model ?? "—"}
                {data.model_version && <div className="muted">version {data.model_version}</div>}
              </dd>
            </div>
            <div>
              <dt>Runtime</dt>
              <dd>{data.runtime}</dd>
            </div>
            <div>
              <dt>Namespace</dt>
              <dd>{data.namespace}</dd>
            </div>
            <div>
              <dt>Owner</dt>
              <dd>{ownerOf(data)}</dd>
            </div>
            <div>
              <dt>Created</dt>
              <dd>{when(data.created)}</dd>
            </div>
            <div className="sv-wide">
              <dt>Endpoint</dt>
              <dd>
                <code>{data.endpoint}</code>
              </dd>
            </div>
          </dl>
          <section aria-labelledby="sv-controls-title">
            <h3 id="sv-controls-title">Scale or stop</h3>
            <div className="sv-controls">
              <ScaleForm server={data} onScaled={server.reload} />
              <button type="button" className="sv-stop" onClick={() => stop(data)}>
                Stop <span className="visually-hidden">{data.name}</span>
              </button>
            </div>
          </section>
          <Conditions conditions={data.conditions} />
        </>
      )}
      <Events serverId={id} />
    </section>
  );
}
