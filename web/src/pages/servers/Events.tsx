// A server's Kubernetes Events (GET /status/{id}/events): its ModelServe's, Deployment's
// and pods', newest first, refreshed while shown.

import { api } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { REFRESH_MS, usePolling } from "../../components/polling";
import { when } from "./types";
import type { ServerEvent } from "./types";

export function Events({ serverId }: { serverId: string }) {
  const events = useLoad(
    (signal) =>
      api<ServerEvent[]>(`/status/${encodeURIComponent(serverId)}/events`, {
        signal,
        query: { limit: 50 },
      }),
    [serverId],
  );
  usePolling(events.status !== 404, events.refresh);
  const found = events.data;
  return (
    <section aria-labelledby="sv-events-title">
      <h3 id="sv-events-title">Events</h3>
      <ErrorNote error={events.error} />
      <Loading loading={events.loading && !found}>Loading events…</Loading>
      {found && found.length === 0 && <p className="muted">No events.</p>}
      {found && found.length > 0 && (
        <div className="sv-scroll">
          <table className="sv-events">
            <caption>Newest first, refreshed every {REFRESH_MS / 1000} s</caption>
            <thead>
              <tr>
                <th scope="col">Last seen</th>
                <th scope="col">Type</th>
                <th scope="col">Reason</th>
                <th scope="col">Object</th>
                <th scope="col">Message</th>
                <th scope="col">Count</th>
              </tr>
            </thead>
            <tbody>
              {found.map((event, index) => (
                <tr key={`${event.object}-${event.reason}-${event.last_seen ?? ""}-${index}`}>
                  <td>{when(event.last_seen)}</td>
                  <td className={event.type === "Warning" ? "sv-warning" : undefined}>{event.type}</td>
                  <td>{event.reason}</td>
                  <td className="sv-object">{event.object}</td>
                  <td className="sv-message">
                    {event.message}
                    {event.source && <div className="muted">{event.source}</div>}
                  </td>
                  <td>{event.count}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
