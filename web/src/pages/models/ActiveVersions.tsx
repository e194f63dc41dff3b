// Each name's active version (GET /models/active, loaded by the page), its servers and
// their rollouts, the last automatic rollback, and a roll back to the version before.

import type { ActiveModel } from "./types";
import { ServersList } from "./ServersCell";
import { when } from "../jobs/format";
import { href } from "../../route";

interface Props {
  active: ActiveModel[];
  live: boolean;
  onRollBack: (model: ActiveModel) => void;
}

export function ActiveVersions({ active, live, onRollBack }: Props) {
  return (
    <div className="table-scroll">
      <table>
        <caption>Active versions{live ? " (a rollout is in progress: refreshed every 3 s)" : ""}</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Active version</th>
            <th scope="col">Set by</th>
            <th scope="col">Servers and rollout</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {active.length === 0 && (
            <tr>
              <td colSpan={5}>No model name has an active version yet.</td>
            </tr>
          )}
          {active.map((model) => (
            <tr key={model.name}>
              <th scope="row">
                <a href={href("models", model.name)}>{model.name}</a>
              </th>
              <td>
                {model.id}
                {model.last_rollback && (
                  <div className="muted">
                    Rolled back automatically {when(model.last_rollback.at)}: {model.last_rollback.failed_id} →{" "}
                    {model.last_rollback.restored_id ?? "none"} ({model.last_rollback.reason ?? ""})
                  </div>
                )}
              </td>
              <td>
                {model.set_by}
                <div className="muted">{when(model.set_at)}</div>
              </td>
              <td>
                <ServersList servers={model.servers} />
              </td>
              <td>
                <button type="button" onClick={() => onRollBack(model)}>
                  Roll back <span className="visually-hidden">{model.name}</span>
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
