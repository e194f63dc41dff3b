// Usage and limits: today's and this month's requests and tokens against the contract's
// limits, per model, and per day in charts (docs/contract.md). Yours; for admins any
// user's or team's; for members their teams'.

import { useState } from "react";
import { ErrorNote, Loading, useLoad } from "../components/Load";
import { useSession } from "../session";
import { Charts } from "./usage/Charts";
import { LimitsPanel, scopesOf } from "./usage/Limits";
import { loadLimits, loadUsage } from "./usage/load";
import { ModelTable } from "./usage/ModelTable";
import { Picker } from "./usage/Picker";
import { Totals } from "./usage/Totals";
import type { Whose } from "./usage/types";
import "./pages-usage.css";

function whoseTitle(whose: Whose, username: string): string {
  if (whose.kind === "user") return `User ${whose.name}`;
  if (whose.kind === "team") return `Team ${whose.name}`;
  return `You (${username})`;
}

export function Usage() {
  const { user, isAdmin } = useSession();
  const [whose, setWhose] = useState<Whose>({ kind: "me" });
  const [days, setDays] = useState(30);
  const name = whose.kind === "me" ? "" : whose.name;
  const usage = useLoad((signal) => loadUsage(whose, days, signal), [whose.kind, name, days]);
  const contract = useLoad((signal) => loadLimits(whose, signal), [whose.kind, name]);
  if (!user) return null;
  // While another user's, team's or span's figures load, the last ones are not shown
  // under the new name.
  const data = usage.loading ? null : usage.data;
  const limitsView = contract.loading ? null : contract.data;
  const limits = data && limitsView ? scopesOf(limitsView, whose, data, isAdmin) : null;
  return (
    <div className="usage-page">
      <Picker
        username={user.username}
        teams={user.teams}
        isAdmin={isAdmin}
        whose={whose}
        days={days}
        onWhose={setWhose}
        onDays={setDays}
      />
      <p className="usage-whom" aria-live="polite">
        Showing: <strong>{whoseTitle(whose, user.username)}</strong>
      </p>
      <ErrorNote error={usage.error} />
      <Loading loading={usage.loading}>Reading the usage…</Loading>
      {data && (
        <>
          <section aria-labelledby="usage-totals">
            <h2 id="usage-totals">Today and this month</h2>
            <Totals day={data.day} month={data.month} />
          </section>
          <section aria-labelledby="usage-limits">
            <h2 id="usage-limits">Limits</h2>
            <ErrorNote error={contract.error} />
            <Loading loading={contract.loading}>Reading the limits…</Loading>
            {limits && <LimitsPanel scopes={limits.scopes} note={limits.note} />}
          </section>
          <section aria-labelledby="usage-models">
            <h2 id="usage-models">Per model</h2>
            <ModelTable day={data.day} month={data.month} />
          </section>
          <section aria-labelledby="usage-days">
            <h2 id="usage-days">Over time</h2>
            <Charts daily={data.daily} />
          </section>
        </>
      )}
    </div>
  );
}
