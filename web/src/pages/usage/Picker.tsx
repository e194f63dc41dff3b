// Whose usage the page shows: yours; for admins any user or team named; for members one
// of their teams. And how many days the charts cover.

import { useState } from "react";
import type { FormEvent } from "react";
import type { Whose } from "./types";

export const DAY_CHOICES = [7, 30, 90];

interface PickerProps {
  username: string;
  teams: string[];
  isAdmin: boolean;
  whose: Whose;
  days: number;
  onWhose: (whose: Whose) => void;
  onDays: (days: number) => void;
}

export function Picker({ username, teams, isAdmin, whose, days, onWhose, onDays }: PickerProps) {
  return (
    <div className="usage-picker">
      {isAdmin ? (
        <AdminPicker whose={whose} onWhose={onWhose} />
      ) : (
        teams.length > 0 && (
          <label>
            Whose usage
            <select
              value={whose.kind === "team" ? `team:${whose.name}` : "me"}
              onChange={(event) => {
                const value = event.target.value;
                onWhose(value === "me" ? { kind: "me" } : { kind: "team", name: value.slice(5) });
              }}
            >
              <option value="me">Mine ({username})</option>
              {teams.map((team) => (
                <option key={team} value={`team:${team}`}>
                  Team {team}
                </option>
              ))}
            </select>
          </label>
        )
      )}
      <label>
        Days in the charts
        <select value={days} onChange={(event) => onDays(Number(event.target.value))}>
          {DAY_CHOICES.map((n) => (
            <option key={n} value={n}>
              Last {n} days
            </option>
          ))}
        </select>
      </label>
    </div>
  );
}

function AdminPicker({ whose, onWhose }: { whose: Whose; onWhose: (whose: Whose) => void }) {
  const [kind, setKind] = useState<Whose["kind"]>(whose.kind);
  const [name, setName] = useState(whose.kind === "me" ? "" : whose.name);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const trimmed = name.trim();
    onWhose(kind === "me" || !trimmed ? { kind: "me" } : { kind, name: trimmed });
  };
  return (
    <form className="usage-whose" onSubmit={submit} aria-label="Show the usage of">
      <label>
        Whose usage
        <select value={kind} onChange={(event) => setKind(event.target.value as Whose["kind"])}>
          <option value="me">Mine</option>
          <option value="user">A user</option>
          <option value="team">A team</option>
        </select>
      </label>
      {kind !== "me" && (
        <label>
          {kind === "user" ? "User name" : "Team name"}
          <input value={name} onChange={(event) => setName(event.target.value)} required />
        </label>
      )}
      <button type="submit">Show</button>
    </form>
  );
}
