// Teams: a page of the list with members (GET /teams), a new team (POST /teams), delete one
// (DELETE /teams/{name}), add and remove members (PUT / DELETE
// /teams/{name}/members/{username}). Removing a member or deleting a team revokes the
// members' tokens: the confirmation says so.

import { useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote } from "../../components/Load";
import { NAME_HINT, NAME_PATTERN, REVOKES } from "./types";
import type { TeamRecord, UserRecord } from "./types";

export function NewTeam({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function create(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api<TeamRecord>("/teams", { body: { name } });
      setName("");
      onCreated();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="inline" onSubmit={create} aria-label="New team">
      <label>
        Team name
        <input
          value={name}
          onChange={(e) => setName(e.target.value)}
          required
          maxLength={63}
          pattern={NAME_PATTERN}
          title={NAME_HINT}
          autoComplete="off"
        />
      </label>
      <button type="submit" disabled={busy}>
        {busy ? "Creating…" : "Create team"}
      </button>
      <ErrorNote error={error} />
    </form>
  );
}

export function TeamsTable({
  teams,
  total,
  users,
  me,
  onChanged,
}: {
  teams: TeamRecord[];
  total: number; // teams in all, on every page
  users: UserRecord[] | null;
  me: string | undefined;
  onChanged: () => void;
}) {
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function act(call: () => Promise<unknown>, message: string) {
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      await call();
      setDone(message);
      onChanged();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  function path(team: string, member?: string): string {
    const base = `/teams/${encodeURIComponent(team)}`;
    return member === undefined ? base : `${base}/members/${encodeURIComponent(member)}`;
  }

  function remove(team: TeamRecord) {
    const members = team.members.length
      ? ` Its members (${team.members.join(", ")}) leave it, and ${REVOKES}.`
      : " It has no members.";
    const yours = me !== undefined && team.members.includes(me) ? " You are a member: you will be signed out." : "";
    if (!window.confirm(`Delete the team ${team.name}?${members}${yours}`)) return;
    void act(() => api(path(team.name), { method: "DELETE" }), `The team ${team.name} was deleted.`);
  }

  function removeMember(team: TeamRecord, member: string) {
    const yours = member === me ? " This is you: you will be signed out." : "";
    if (!window.confirm(`Take ${member} out of ${team.name}? This revokes their tokens: ${REVOKES}.${yours}`)) {
      return;
    }
    void act(
      () => api(path(team.name, member), { method: "DELETE" }),
      `${member} left ${team.name}; their tokens are revoked.`,
    );
  }

  function addMember(team: TeamRecord, member: string) {
    void act(
      () => api(path(team.name, member), { method: "PUT" }),
      `${member} joined ${team.name}. This revokes nothing: their tokens carry the team once they sign in again.`,
    );
  }

  return (
    <>
      <ErrorNote error={error} />
      {done && (
        <p className="notice" role="status">
          {done}
        </p>
      )}
      <div className="table-scroll">
        <table>
          <caption>
            Teams by name ({total} in all)
          </caption>
          <thead>
            <tr>
              <th scope="col">Team</th>
              <th scope="col">Members</th>
              <th scope="col">Add a member</th>
              <th scope="col">Created</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {teams.length === 0 && (
              <tr>
                <td colSpan={5}>No teams yet.</td>
              </tr>
            )}
            {teams.map((team) => (
              <tr key={team.name}>
                <th scope="row">{team.name}</th>
                <td>
                  {team.members.length === 0 ? (
                    <span className="muted">none</span>
                  ) : (
                    <ul className="plain members">
                      {team.members.map((member) => (
                        <li key={member}>
                          {member}{" "}
                          <button type="button" disabled={busy} onClick={() => removeMember(team, member)}>
                            Remove{" "}
                            <span className="visually-hidden">
                              {member} from {team.name}
                            </span>
                          </button>
                        </li>
                      ))}
                    </ul>
                  )}
                </td>
                <td>
                  <AddMember
                    team={team}
                    candidates={(users ?? [])
                      .map((user) => user.username)
                      .filter((name) => !team.members.includes(name))}
                    busy={busy}
                    onAdd={(member) => addMember(team, member)}
                  />
                </td>
                <td>{new Date(team.created_at).toLocaleDateString()}</td>
                <td>
                  <button type="button" disabled={busy} onClick={() => remove(team)}>
                    Delete <span className="visually-hidden">the team {team.name}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

function AddMember({
  team,
  candidates,
  busy,
  onAdd,
}: {
  team: TeamRecord;
  candidates: string[];
  busy: boolean;
  onAdd: (member: string) => void;
}) {
  const [member, setMember] = useState("");
  const chosen = candidates.includes(member) ? member : "";
  if (candidates.length === 0) return <span className="muted">everyone is a member</span>;

  function add(event: FormEvent) {
    event.preventDefault();
    if (chosen) onAdd(chosen);
    setMember("");
  }

  return (
    <form className="inline compact" onSubmit={add} aria-label={`Add a member to ${team.name}`}>
      <label>
        <span className="visually-hidden">User to add to {team.name}</span>
        <select value={chosen} onChange={(e) => setMember(e.target.value)} required>
          <option value="">choose a user</option>
          {candidates.map((name) => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <button type="submit" disabled={busy || !chosen}>
        Add
      </button>
    </form>
  );
}
