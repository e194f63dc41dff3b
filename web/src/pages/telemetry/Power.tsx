// GET /settings/power_profile: the current profile, each profile's figures and what each
// node agent applied; admins choose another (POST /settings/power_profile).

import { useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import { round } from "./format";
import type { PowerView } from "./types";

export function PowerProfile({ isAdmin }: { isAdmin: boolean }) {
  const power = useLoad((signal) => api<PowerView>("/settings/power_profile", { signal }), []);
  const [choice, setChoice] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const data = power.data;
  const selected = choice ?? data?.current ?? "";

  async function choose(event: FormEvent) {
    event.preventDefault();
    if (!data) return;
    const profile = data.profiles[selected];
    if (!profile) return;
    const question =
      `Set the power profile to "${selected}"? Node agents that apply power limits set every ` +
      `GPU's limit to ${round(profile.power_limit_w)} W at their next reading (about 10 s), and ` +
      `at most ${profile.max_concurrent_jobs} job item(s) of one model run at once.`;
    if (!window.confirm(question)) return;
    setBusy(true);
    setError(null);
    try {
      await api<PowerView>("/settings/power_profile", { body: { profile: selected } });
      setChoice(null);
      power.reload();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="power-title">
      <h2 id="power-title">Power profile</h2>
      <ErrorNote error={power.error} />
      <Loading loading={power.loading && !data} />
      {data && (
        <>
          <p>
            Current: <strong>{data.current}</strong>
            {data.chosen ? "" : " (the default: no admin has chosen one, so agents leave the limits alone)"}
            , at most {data.max_concurrent_jobs} job item(s) of one model at once.
          </p>
          <table>
            <caption>Profiles</caption>
            <thead>
              <tr>
                <th scope="col">Profile</th>
                <th scope="col">GPU power limit</th>
                <th scope="col">Job items of a model at once</th>
                <th scope="col">What</th>
              </tr>
            </thead>
            <tbody>
              {Object.entries(data.profiles).map(([name, profile]) => (
                <tr key={name} aria-current={name === data.current ? "true" : undefined}>
                  <th scope="row">
                    {name}
                    {name === data.current && <span className="muted"> (current)</span>}
                  </th>
                  <td>{round(profile.power_limit_w)} W</td>
                  <td>{profile.max_concurrent_jobs}</td>
                  <td>{profile.description}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {isAdmin && (
            <form className="inline" onSubmit={choose} aria-label="Choose the power profile">
              <label>
                Power profile
                <select value={selected} onChange={(e) => setChoice(e.target.value)}>
                  {Object.keys(data.profiles).map((name) => (
                    <option key={name} value={name}>
                      {name}
                    </option>
                  ))}
                </select>
              </label>
              <button type="submit" disabled={busy || (selected === data.current && data.chosen)}>
                {busy ? "Setting…" : "Set profile"}
              </button>
            </form>
          )}
          <ErrorNote error={error} />
          <h3>What the node agents applied</h3>
          {data.applied_note && <p>{data.applied_note}</p>}
          {data.applied.length > 0 && (
            <ul>
              {data.applied.map((node) => (
                <li key={node.node}>
                  <strong>{node.node}</strong>{" "}
                  <span className="muted">(reported {new Date(node.reported_at).toLocaleTimeString()})</span>
                  {node.profile !== undefined && (
                    <>
                      : profile {node.profile ?? "none"}
                      {typeof node.target_w === "number" ? `, target ${round(node.target_w)} W` : ""}
                      {node.enabled === false ? ", applying limits is switched off on this agent" : ""}
                    </>
                  )}
                  {node.message && <>: {node.message}</>}
                  {node.gpus && node.gpus.length > 0 && (
                    <ul>
                      {node.gpus.map((result) => (
                        <li key={result.index}>
                          GPU {result.index}: {result.result.replace(/_/g, " ")}
                          {result.limit_w !== null ? `, ${round(result.limit_w)} W` : ""}
                          {result.message ? ` (${result.message})` : ""}
                        </li>
                      ))}
                    </ul>
                  )}
                </li>
              ))}
            </ul>
          )}
          <button type="button" onClick={power.reload} disabled={power.loading}>
            Read again
          </button>
        </>
      )}
    </section>
  );
}
