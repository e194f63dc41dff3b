// The model records (GET /models: downloaded and registered), a page at a time, filtered
// by name, tag and origin; each name's active version marked, others can be set active.

import { useState } from "react";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { bytes, when } from "../jobs/format";
import { loadPage } from "../../components/paged";
import { Pager } from "../../components/Pager";
import type { ModelRecord } from "./types";

const LIMIT = 25;

interface Props {
  initialName: string;
  activeIds: Map<string, string>; // name → active version id
  version: number; // bumped when records may have changed
  onSetActive: (record: ModelRecord) => void;
}

export function ModelTable({ initialName, activeIds, version, onSetActive }: Props) {
  const [name, setName] = useState(initialName);
  const [tag, setTag] = useState("");
  const [origin, setOrigin] = useState("");
  const [applied, setApplied] = useState({ name: initialName, tag: "", origin: "" });
  const [offset, setOffset] = useState(0);
  const records = useLoad(
    (signal) => loadPage<ModelRecord>("/models", { ...applied, limit: LIMIT, offset }, signal),
    [applied, offset, version],
  );
  const page = records.data;

  return (
    <section aria-labelledby="records-title">
      <h2 id="records-title">Model versions</h2>
      <form
        className="inline"
        aria-label="Filter models"
        onSubmit={(event) => {
          event.preventDefault();
          setApplied({ name: name.trim(), tag: tag.trim(), origin });
          setOffset(0);
        }}
      >
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} maxLength={256} />
        </label>
        <label>
          Tags (comma-separated, all required)
          <input value={tag} onChange={(e) => setTag(e.target.value)} />
        </label>
        <label>
          Origin
          <select value={origin} onChange={(e) => setOrigin(e.target.value)}>
            <option value="">any</option>
            <option value="download">download</option>
            <option value="register">register</option>
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      <ErrorNote error={records.error} />
      <Loading loading={records.loading && !page} />
      {page && (
        <>
          <div className="table-scroll">
            <table>
              <caption>Model records, by name then age</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Version (id)</th>
                  <th scope="col">Origin</th>
                  <th scope="col">Tags</th>
                  <th scope="col">Size</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {page.items.length === 0 && (
                  <tr>
                    <td colSpan={7}>No model records{applied.name || applied.tag || applied.origin ? " match" : ""}.</td>
                  </tr>
                )}
                {page.items.map((record) => {
                  const active = activeIds.get(record.name) === record.id;
                  return (
                    <tr key={record.id}>
                      <td>{record.name}</td>
                      <th scope="row">
                        {record.id}
                        {active && <span className="badge"> active</span>}
                        <div className="muted">{record.format}</div>
                        <div className="muted uri">{record.uri}</div>
                      </th>
                      <td>
                        {record.origin}
                        {record.source_label && <div className="muted">source {record.source_label}</div>}
                      </td>
                      <td>{record.tags.length ? record.tags.join(", ") : "—"}</td>
                      <td>{bytes(record.size)}</td>
                      <td>{when(record.created_at)}</td>
                      <td>
                        {!active && (
                          <button type="button" onClick={() => onSetActive(record)}>
                            Set active <span className="visually-hidden">{record.id}</span>
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
            label="model records"
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
