// Admin: users and teams (admins only). Users: GET /users (by page), POST /users,
// PATCH /users/{username}, PUT /users/{username}/password. Teams: GET /teams (by page),
// POST /teams, DELETE /teams/{name}, PUT / DELETE /teams/{name}/members/{username}. The
// confirmations say what docs/api.md and docs/gateway.md say a change revokes.

import { useState } from "react";
import { api } from "../api";
import { ErrorNote, Loading, useLoad } from "../components/Load";
import { currentRoute, href } from "../route";
import { useSession } from "../session";
import { NewTeam, TeamsTable } from "./admin/Teams";
import type { TeamRecord, UserRecord } from "./admin/types";
import { NewUser, UsersTable } from "./admin/Users";
import { loadPage } from "../components/paged";
import { Pager } from "../components/Pager";
import "./pages-admin-telemetry.css";

const VIEWS = [
  { path: "users", title: "Users" },
  { path: "teams", title: "Teams" },
] as const;
const PAGE = 50; // rows of a table
// The names offered where a user's teams or a team's members are chosen: the most one
// answer of GET /users or /teams holds.
const CHOICES = 1000;

interface Choices {
  teams: TeamRecord[] | null;
  users: UserRecord[] | null;
}

export function Admin({ route }: { route: string[] }) {
  const { user, isAdmin } = useSession();
  // Asked of everyone: for someone who is not an admin the platform's own answer (403)
  // is shown under the sentence below.
  const [userOffset, setUserOffset] = useState(0);
  const [teamOffset, setTeamOffset] = useState(0);
  const users = useLoad(
    (signal) => loadPage<UserRecord>("/users", { limit: PAGE, offset: userOffset }, signal),
    [userOffset],
  );
  const teams = useLoad(
    (signal) => loadPage<TeamRecord>("/teams", { limit: PAGE, offset: teamOffset }, signal),
    [teamOffset],
  );
  const view = route[0] === "teams" ? "teams" : "users";
  // Only the view shown needs the other list's names, for its pickers.
  const choices = useLoad<Choices>(
    (signal) =>
      view === "users"
        ? api<TeamRecord[]>("/teams", { query: { limit: CHOICES }, signal }).then((teamList) => ({
            teams: teamList,
            users: null,
          }))
        : api<UserRecord[]>("/users", { query: { limit: CHOICES }, signal }).then((userList) => ({
            teams: null,
            users: userList,
          })),
    [view],
  );
  const page = currentRoute()[0] ?? "";
  const reloadUsers = users.reload;
  const reloadTeams = teams.reload;
  const reloadChoices = choices.reload;
  const reloadAll = () => {
    reloadUsers();
    reloadTeams();
    reloadChoices();
  };

  if (!isAdmin && !users.data) {
    return (
      <div className="ms-page">
        <p>This page is for admins: it manages the platform's users and teams.</p>
        <ErrorNote error={users.error} />
        <Loading loading={users.loading} />
      </div>
    );
  }

  return (
    <div className="ms-page">
      <nav aria-label="Admin" className="subnav">
        <ul>
          {VIEWS.map((entry) => (
            <li key={entry.path}>
              <a href={href(page, entry.path)} aria-current={entry.path === view ? "page" : undefined}>
                {entry.title}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <ErrorNote error={choices.error} />
      {view === "users" ? (
        <section aria-labelledby="users-title">
          <h2 id="users-title">Users</h2>
          <NewUser teams={choices.data?.teams ?? []} onCreated={reloadAll} />
          <ErrorNote error={users.error} />
          <Loading loading={users.loading && !users.data} />
          {users.data && (
            <>
              <UsersTable
                users={users.data.items}
                total={users.data.total}
                teams={choices.data?.teams ?? []}
                me={user?.username}
                onChanged={reloadAll}
              />
              <Pager
                label="users"
                offset={userOffset}
                limit={PAGE}
                total={users.data.total}
                shown={users.data.items.length}
                onOffset={setUserOffset}
              />
            </>
          )}
        </section>
      ) : (
        <section aria-labelledby="teams-title">
          <h2 id="teams-title">Teams</h2>
          <NewTeam onCreated={reloadAll} />
          <ErrorNote error={teams.error} />
          <Loading loading={teams.loading && !teams.data} />
          {teams.data && (
            <>
              <TeamsTable
                teams={teams.data.items}
                total={teams.data.total}
                users={choices.data?.users ?? null}
                me={user?.username}
                onChanged={reloadAll}
              />
              <Pager
                label="teams"
                offset={teamOffset}
                limit={PAGE}
                total={teams.data.total}
                shown={teams.data.items.length}
                onOffset={setTeamOffset}
              />
            </>
          )}
        </section>
      )}
    </div>
  );
}
