// API keys: the caller's keys by page (GET /auth/keys), a new one (its secret shown
// once), revoke.

import { useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf } from "../api";
import { ErrorNote, Loading, useLoad } from "../components/Load";
import { loadPage } from "../components/paged";
import { Pager } from "../components/Pager";

const PAGE = 50;

interface Key {
  id: string;
  name: string;
  created_at: string;
  expires_at: string | null;
  revoked_at?: string | null;
}

interface NewKey extends Key {
  key: string;
}

export function Keys() {
  const [offset, setOffset] = useState(0);
  const keys = useLoad(
    (signal) => loadPage<Key>("/auth/keys", { limit: PAGE, offset }, signal),
    [offset],
  );
  const [name, setName] = useState("");
  const [days, setDays] = useState("30");
  const [made, setMade] = useState<NewKey | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function create(event: FormEvent) {
    event.preventDefault();
    setError(null);
    try {
      const body: Record<string, unknown> = { name };
      if (days) body.expires_in_days = Number(days);
      setMade(await api<NewKey>("/auth/keys", { body }));
      setName("");
      keys.reload();
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  async function revoke(key: Key) {
    if (!window.confirm(`Revoke the key "${key.name}"? Programs using it stop working.`)) return;
    setError(null);
    try {
      await api(`/auth/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
      keys.reload();
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  return (
    <>
      <form className="inline" onSubmit={create} aria-label="New API key">
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={100} />
        </label>
        <label>
          Expires in (days)
          <input
            type="number"
            min={1}
            max={3650}
            value={days}
            onChange={(e) => setDays(e.target.value)}
          />
        </label>
        <button type="submit">Create key</button>
      </form>
      {made && (
        <div className="notice" role="status">
          <p>
            The key <strong>{made.name}</strong>. Copy it now: it is not shown again.
          </p>
          <code className="secret" aria-label="New key">
            {made.key}
          </code>
        </div>
      )}
      <ErrorNote error={error ?? keys.error} />
      <Loading loading={keys.loading && !keys.data} />
      {keys.data && (
        <>
          <table>
            <caption>Your API keys, oldest first ({keys.data.total} in all)</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {keys.data.items.length === 0 && (
                <tr>
                  <td colSpan={4}>No keys yet.</td>
                </tr>
              )}
              {keys.data.items.map((key) => (
                <tr key={key.id}>
                  <td>{key.name}</td>
                  <td>{new Date(key.created_at).toLocaleString()}</td>
                  <td>{key.expires_at ? new Date(key.expires_at).toLocaleString() : "never"}</td>
                  <td>
                    <button type="button" onClick={() => revoke(key)}>
                      Revoke <span className="visually-hidden">{key.name}</span>
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager
            label="API keys"
            offset={offset}
            limit={PAGE}
            total={keys.data.total}
            shown={keys.data.items.length}
            onOffset={setOffset}
          />
        </>
      )}
    </>
  );
}
