// Servers: the caller's servers (GET /status; admins: all) with their phase and replicas,
// kept current every few seconds; serve a model (POST /serve); stop one (DELETE /stop).

import { useEffect, useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf } from "../api";
import { ErrorNote, Loading, useLoad } from "../components/Load";

interface Server {
  server_id: string;
  name: string;
  namespace: string;
  owner: string | null;
  team: string | null;
  model: string;
  runtime: string;
  replicas: number;
  ready_replicas: number;
  status: string;
  message: string;
  endpoint: string | null;
  created: string | null;
}

const REFRESH_MS = 3000;

export function Servers() {
  const servers = useLoad((signal) => api<Server[]>("/status", { signal }), []);
  const { reload } = servers;
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const timer = window.setInterval(reload, REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [reload]);

  async function stop(server: Server) {
    if (!window.confirm(`Stop ${server.name}? Its pods and route are deleted.`)) return;
    setError(null);
    try {
      await api(`/stop/${encodeURIComponent(server.server_id)}`, { method: "DELETE" });
      reload();
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  return (
    <>
      <ServeForm onServed={reload} />
      <ErrorNote error={error ?? servers.error} />
      <Loading loading={servers.loading && !servers.data} />
      {servers.data && (
        <table>
          <caption>Servers (refreshed every {REFRESH_MS / 1000} s)</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Model</th>
              <th scope="col">Runtime</th>
              <th scope="col">Status</th>
              <th scope="col">Replicas</th>
              <th scope="col">Owner</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {servers.data.length === 0 && (
              <tr>
                <td colSpan={7}>No servers. Serve a model above.</td>
              </tr>
            )}
            {servers.data.map((server) => (
              <tr key={server.server_id}>
                <td>
                  {server.name}
                  <div className="muted">{server.namespace}</div>
                </td>
                <td>{server.model}</td>
                <td>{server.runtime}</td>
                <td>
                  <span className={`phase phase-${server.status.toLowerCase()}`}>
                    {server.status}
                  </span>
                  {server.message && <div className="muted">{server.message}</div>}
                </td>
                <td>
                  {server.ready_replicas} / {server.replicas} ready
                </td>
                <td>{server.team ? `${server.owner ?? ""} (${server.team})` : server.owner}</td>
                <td>
                  <button type="button" onClick={() => stop(server)}>
                    Stop <span className="visually-hidden">{server.name}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function ServeForm({ onServed }: { onServed: () => void }) {
  const [model, setModel] = useState("");
  const [runtime, setRuntime] = useState("");
  const [gpus, setGpus] = useState("");
  const [servedName, setServedName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function serve(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body: Record<string, unknown> = { model_name: model };
    if (runtime) body.runtime = runtime;
    if (gpus) body.gpus = Number(gpus);
    if (servedName) body.served_name = servedName;
    try {
      await api("/serve", { body });
      setModel("");
      setServedName("");
      onServed();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="inline" onSubmit={serve} aria-label="Serve a model">
      <label>
        Model
        <input value={model} onChange={(e) => setModel(e.target.value)} required />
      </label>
      <label>
        Runtime
        <select value={runtime} onChange={(e) => setRuntime(e.target.value)}>
          <option value="">by the model's format</option>
          <option value="llamacpp">llama.cpp</option>
          <option value="vllm">vLLM</option>
        </select>
      </label>
      <label>
        GPUs per replica
        <input type="number" min={0} max={8} value={gpus} onChange={(e) => setGpus(e.target.value)} />
      </label>
      <label>
        Served name
        <input value={servedName} onChange={(e) => setServedName(e.target.value)} />
      </label>
      <button type="submit" disabled={busy}>
        {busy ? "Serving…" : "Serve"}
      </button>
      <ErrorNote error={error} />
    </form>
  );
}
