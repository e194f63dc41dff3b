// Changes of active versions, newest first (GET /models/history, paginated), with a roll
// back on the change that last moved a name's pointer.

import { useState } from "react";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { when } from "../jobs/format";
import { loadPage } from "../../components/paged";
import { Pager } from "../../components/Pager";
import type { ActiveModel, HistoryEntry } from "./types";

const LIMIT = 20;

interface Props {
  active: Map<string, ActiveModel>;
  version: number;
  onRollBack: (entry: HistoryEntry) => void;
}

export function History({ active, version, onRollBack }: Props) {
  const [name, setName] = useState("");
  const [applied, setApplied] = useState("");
  const [offset, setOffset] = useState(0);
  const history = useLoad(
    (signal) => loadPage<HistoryEntry>("/models/history", { name: applied, limit: LIMIT, offset }, signal),
    [applied, offset, version],
  );
  const page = history.data;

  return (
    <section aria-labelledby="history-title">
      <h2 id="history-title">History of active versions</h2>
      <form
        className="inline"
        aria-label="Filter the history"
        onSubmit={(event) => {
          event.preventDefault();
          setApplied(name.trim());
          setOffset(0);
        }}
      >
        <label>
          Model name
          <input value={name} onChange={(e) => setName(e.target.value)} maxLength={256} />
        </label>
        <button type="submit">Show</button>
      </form>
      <ErrorNote error={history.error} />
      <Loading loading={history.loading && !page} />
      {page && (
        <>
          <div className="table-scroll">
            <table>
              <caption>Changes, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Name</th>
                  <th scope="col">Change</th>
                  <th scope="col">By</th>
                  <th scope="col">Reason</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {page.items.length === 0 && (
                  <tr>
                    <td colSpan={6}>No changes recorded.</td>
                  </tr>
                )}
                {page.items.map((entry) => {
                  const current = active.get(entry.name);
                  const undoable =
                    entry.action === "set_active" && entry.from_id !== null && current?.history_id === entry.id;
                  return (
                    <tr key={entry.id}>
                      <td>{when(entry.at)}</td>
                      <th scope="row">{entry.name}</th>
                      <td>
                        {entry.from_id ?? "none"} → {entry.to_id ?? "none"}
                        <div className="muted">
                          {entry.action === "automatic_rollback"
                            ? `automatic rollback${entry.server ? ` on ${entry.server}` : ""}${entry.pointer_moved === false ? " (pointer kept)" : ""}`
                            : "set active"}
                        </div>
                      </td>
                      <td>{entry.actor}</td>
                      <td>{[entry.reason, entry.message].filter(Boolean).join(" — ") || "—"}</td>
                      <td>
                        {undoable && (
                          <button type="button" onClick={() => onRollBack(entry)}>
                            Roll back to {entry.from_id}
                            <span className="visually-hidden"> ({entry.name})</span>
                          </button>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          <Pager
            label="history"
            offset={offset}
            limit={LIMIT}
            total={page.total}
            shown={page.items.length}
            onOffset={setOffset}
          />
        </>
      )}
    </section>
  );
}
