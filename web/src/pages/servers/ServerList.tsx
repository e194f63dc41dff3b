// The caller's servers (GET /status, 50 a page; admins: all), refreshed every few
// seconds: each one's phase, loading state and replicas, a link to its detail, and Stop.

import { useState } from "react";
import { messageOf } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { loadPage } from "../../components/paged";
import { Pager } from "../../components/Pager";
import { href } from "../../route";
import { LoadState, Phase } from "./Badges";
import { REFRESH_MS, usePolling } from "../../components/polling";
import { stopServer } from "./stop";
import { desired, ownerOf } from "./types";
import type { Server } from "./types";

const PAGE = 50;

export function ServerList({ version }: { version: number }) {
  const [offset, setOffset] = useState(0);
  const servers = useLoad(
    (signal) => loadPage<Server>("/status", { limit: PAGE, offset }, signal),
    [version, offset],
  );
  const [error, setError] = useState<string | null>(null);
  usePolling(true, servers.refresh);

  async function stop(server: Server) {
    setError(null);
    try {
      if (await stopServer(server)) servers.reload();
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  return (
    <>
      <ErrorNote error={error ?? servers.error} />
      <Loading loading={servers.loading && !servers.data} />
      {servers.data && (
        <>
          <div className="sv-scroll">
            <table className="sv-list">
              <caption>
                Servers, oldest first ({servers.data.total} in all; refreshed every {REFRESH_MS / 1000} s)
              </caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Model</th>
                  <th scope="col">Runtime</th>
                  <th scope="col">Status</th>
                  <th scope="col">State</th>
                  <th scope="col">Replicas</th>
                  <th scope="col">Owner</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {servers.data.items.length === 0 && (
                  <tr>
                    <td colSpan={8}>No servers. Serve a model above.</td>
                  </tr>
                )}
                {servers.data.items.map((server) => (
                  <tr key={server.server_id}>
                    <td>
                      <a href={href("servers", server.server_id)}>{server.name}</a>
                      <div className="muted">{server.namespace}</div>
                    </td>
                    <td>{server.model}</td>
                    <td>{server.runtime}</td>
                    <td>
                      <Phase phase={server.status} />
                      {server.message && <div className="muted">{server.message}</div>}
                    </td>
                    <td>
                      <LoadState state={server.state} />
                    </td>
                    <td>
                      {server.ready_replicas} / {desired(server)} ready
                    </td>
                    <td>{ownerOf(server)}</td>
                    <td>
                      <button type="button" onClick={() => stop(server)}>
                        Stop <span className="visually-hidden">{server.name}</span>
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager
            label="servers"
            offset={offset}
            limit={PAGE}
            total={servers.data.total}
            shown={servers.data.items.length}
            onOffset={setOffset}
          />
        </>
      )}
    </>
  );
}
