// Users: a page of the list (GET /users), a new user (POST /users), a user's role, teams and
// disabled flag (PATCH /users/{username}), a password (PUT /users/{username}/password).
// Each change that revokes tokens says so before it is made.

import { useState } from "react";
import type { FormEvent } from "react";
import { api, messageOf } from "../../api";
import { ErrorNote } from "../../components/Load";
import { MAX_PASSWORD, MIN_PASSWORD, NAME_HINT, NAME_PATTERN, REVOKES, ROLES } from "./types";
import type { TeamRecord, UserRecord } from "./types";

type Role = UserRecord["role"];

function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

// Team check boxes: `chosen` keeps its order (the first team is the default one), new
// ones go last.
function TeamChecks({
  teams,
  chosen,
  onChange,
  legend,
}: {
  teams: TeamRecord[];
  chosen: string[];
  onChange: (next: string[]) => void;
  legend: string;
}) {
  return (
    <fieldset>
      <legend>{legend}</legend>
      {teams.length === 0 ? (
        <p className="muted">No teams yet.</p>
      ) : (
        <div className="checks">
          {teams.map((team) => (
            <label key={team.name}>
              <input
                type="checkbox"
                checked={chosen.includes(team.name)}
                onChange={(e) =>
                  onChange(
                    e.target.checked
                      ? [...chosen, team.name]
                      : chosen.filter((name) => name !== team.name),
                  )
                }
              />
              {team.name}
            </label>
          ))}
        </div>
      )}
    </fieldset>
  );
}

export function NewUser({ teams, onCreated }: { teams: TeamRecord[]; onCreated: () => void }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("user");
  const [chosen, setChosen] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function create(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const made = await api<UserRecord>("/users", {
        body: { username, password, role, teams: chosen },
      });
      setDone(`The user ${made.username} was created.`);
      setUsername("");
      setPassword("");
      setRole("user");
      setChosen([]);
      onCreated();
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="inline" onSubmit={create} aria-labelledby="new-user-title">
      <h3 id="new-user-title" className="form-title">
        New user
      </h3>
      <label>
        Username
        <input
          value={username}
          onChange={(e) => setUsername(e.target.value)}
          required
          maxLength={63}
          pattern={NAME_PATTERN}
          title={NAME_HINT}
          autoComplete="off"
        />
      </label>
      <label>
        Password
        <input
          type="password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          required
          minLength={MIN_PASSWORD}
          maxLength={MAX_PASSWORD}
          autoComplete="new-password"
        />
      </label>
      <label>
        Role
        <select value={role} onChange={(e) => isRole(e.target.value) && setRole(e.target.value)}>
          {ROLES.map((name) => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <TeamChecks teams={teams} chosen={chosen} onChange={setChosen} legend="Teams (the first is the default)" />
      <button type="submit" disabled={busy}>
        {busy ? "Creating…" : "Create user"}
      </button>
      <ErrorNote error={error} />
      {done && (
        <p className="notice" role="status">
          {done}
        </p>
      )}
    </form>
  );
}

type Open = { username: string; what: "edit" | "password" } | null;

export function UsersTable({
  users,
  total,
  teams,
  me,
  onChanged,
}: {
  users: UserRecord[];
  total: number; // users in all, on every page
  teams: TeamRecord[];
  me: string | undefined;
  onChanged: () => void;
}) {
  const [open, setOpen] = useState<Open>(null);
  const [done, setDone] = useState<string | null>(null);

  function finished(message: string) {
    setOpen(null);
    setDone(message);
    onChanged();
  }

  return (
    <>
      {done && (
        <p className="notice" role="status">
          {done}
        </p>
      )}
      <div className="table-scroll">
        <table>
          <caption>
            Users by name ({total} in all)
          </caption>
          <thead>
            <tr>
              <th scope="col">Username</th>
              <th scope="col">Role</th>
              <th scope="col">Teams</th>
              <th scope="col">State</th>
              <th scope="col">Created</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {users.length === 0 && (
              <tr>
                <td colSpan={6}>No users.</td>
              </tr>
            )}
            {users.map((user) => {
              const editing = open?.username === user.username ? open.what : null;
              return (
                <UserRows
                  key={user.username}
                  user={user}
                  teams={teams}
                  self={user.username === me}
                  editing={editing}
                  onOpen={(what) => {
                    setDone(null);
                    setOpen(editing === what ? null : { username: user.username, what });
                  }}
                  onClose={() => setOpen(null)}
                  onDone={finished}
                />
              );
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}

function UserRows({
  user,
  teams,
  self,
  editing,
  onOpen,
  onClose,
  onDone,
}: {
  user: UserRecord;
  teams: TeamRecord[];
  self: boolean;
  editing: "edit" | "password" | null;
  onOpen: (what: "edit" | "password") => void;
  onClose: () => void;
  onDone: (message: string) => void;
}) {
  return (
    <>
      <tr>
        <th scope="row">
          {user.username}
          {self && <span className="muted"> (you)</span>}
        </th>
        <td>{user.role}</td>
        <td>{user.teams.length ? user.teams.join(", ") : <span className="muted">none</span>}</td>
        <td>{user.disabled ? <span className="disabled-user">disabled</span> : "enabled"}</td>
        <td>{new Date(user.created_at).toLocaleDateString()}</td>
        <td>
          <div className="row-actions">
            <button type="button" aria-expanded={editing === "edit"} onClick={() => onOpen("edit")}>
              Change <span className="visually-hidden">{user.username}</span>
            </button>
            <button
              type="button"
              aria-expanded={editing === "password"}
              onClick={() => onOpen("password")}
            >
              Set password <span className="visually-hidden">of {user.username}</span>
            </button>
          </div>
        </td>
      </tr>
      {editing && (
        <tr>
          <td colSpan={6}>
            {editing === "edit" ? (
              <EditUser user={user} teams={teams} self={self} onClose={onClose} onDone={onDone} />
            ) : (
              <SetPassword user={user} self={self} onClose={onClose} onDone={onDone} />
            )}
          </td>
        </tr>
      )}
    </>
  );
}

function EditUser({
  user,
  teams,
  self,
  onClose,
  onDone,
}: {
  user: UserRecord;
  teams: TeamRecord[];
  self: boolean;
  onClose: () => void;
  onDone: (message: string) => void;
}) {
  const [role, setRole] = useState<Role>(user.role);
  const [disabled, setDisabled] = useState(user.disabled);
  const [chosen, setChosen] = useState<string[]>(user.teams);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function save(event: FormEvent) {
    event.preventDefault();
    const body: { role?: Role; disabled?: boolean; teams?: string[] } = {};
    if (role !== user.role) body.role = role;
    if (disabled !== user.disabled) body.disabled = disabled;
    const removed = user.teams.filter((name) => !chosen.includes(name));
    const added = chosen.filter((name) => !user.teams.includes(name));
    if (removed.length || added.length) body.teams = chosen;
    if (Object.keys(body).length === 0) {
      onClose();
      return;
    }
    // What docs/api.md and docs/gateway.md say each change does.
    const what: string[] = [];
    if (body.disabled === true) what.push(`${user.username} is disabled: they cannot sign in, and their API keys stop working`);
    if (body.disabled === false) what.push(`${user.username} is enabled again (this revokes nothing; their API keys work again within about 10 s)`);
    if (body.role) what.push(`their role becomes ${body.role}`);
    if (removed.length) what.push(`they leave ${removed.join(", ")}`);
    if (added.length) what.push(`they join ${added.join(", ")} (new tokens carry it; this alone revokes nothing)`);
    const revokes = body.disabled === true || body.role !== undefined || removed.length > 0;
    let question = `Change ${user.username}? ${what.join("; ")}.`;
    if (revokes) question += ` This revokes their tokens: ${REVOKES}.`;
    if (self && revokes) question += " This is your own account: you will be signed out.";
    if (self && body.role === "user") question += " You will no longer be an admin.";
    if (!window.confirm(question)) return;
    setBusy(true);
    setError(null);
    try {
      await api<UserRecord>(`/users/${encodeURIComponent(user.username)}`, { method: "PATCH", body });
      onDone(`${user.username} was changed${revokes ? "; their tokens are revoked" : ""}.`);
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="admin-edit inline" onSubmit={save} aria-label={`Change ${user.username}`}>
      <label>
        Role
        <select value={role} onChange={(e) => isRole(e.target.value) && setRole(e.target.value)}>
          {ROLES.map((name) => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
      </label>
      <div className="checks">
        <label>
          <input type="checkbox" checked={disabled} onChange={(e) => setDisabled(e.target.checked)} />
          Disabled (cannot sign in)
        </label>
      </div>
      <TeamChecks teams={teams} chosen={chosen} onChange={setChosen} legend="Teams" />
      <button type="submit" disabled={busy}>
        {busy ? "Saving…" : "Save"}
      </button>
      <button type="button" onClick={onClose}>
        Cancel
      </button>
      <ErrorNote error={error} />
    </form>
  );
}

function SetPassword({
  user,
  self,
  onClose,
  onDone,
}: {
  user: UserRecord;
  self: boolean;
  onClose: () => void;
  onDone: (message: string) => void;
}) {
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function save(event: FormEvent) {
    event.preventDefault();
    if (password !== again) {
      setError("The two passwords differ.");
      return;
    }
    let question = `Set a new password for ${user.username}? This revokes their tokens: ${REVOKES}.`;
    if (self) question += " This is your own account: you will be signed out.";
    if (!window.confirm(question)) return;
    setBusy(true);
    setError(null);
    try {
      await api(`/users/${encodeURIComponent(user.username)}/password`, {
        method: "PUT",
        body: { password },
      });
      onDone(`The password of ${user.username} was set; their tokens are revoked.`);
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="admin-edit inline" onSubmit={save} aria-label={`Set the password of ${user.username}`}>
      <label>
        New password
        <input
          type="password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          required
          minLength={MIN_PASSWORD}
          maxLength={MAX_PASSWORD}
          autoComplete="new-password"
        />
      </label>
      <label>
        The same again
        <input
          type="password"
          value={again}
          onChange={(e) => setAgain(e.target.value)}
          required
          autoComplete="new-password"
        />
      </label>
      <button type="submit" disabled={busy}>
        {busy ? "Setting…" : "Set password"}
      </button>
      <button type="button" onClick={onClose}>
        Cancel
      </button>
      <ErrorNote error={error} />
    </form>
  );
}
