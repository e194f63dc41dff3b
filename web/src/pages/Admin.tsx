// Admin: users and teams (admins only). Users: GET /users (all of them: the gateway does
// not paginate), POST /users, PATCH /users/{username}, PUT /users/{username}/password.
// Teams: GET /teams, POST /teams, DELETE /teams/{name}, PUT / DELETE
// /teams/{name}/members/{username}. The confirmations say what docs/api.md and
// docs/gateway.md say a change revokes.

import { api } from "../api";
import { ErrorNote, Loading, useLoad } from "../components/Load";
import { currentRoute, href } from "../route";
import { useSession } from "../session";
import { NewTeam, TeamsTable } from "./admin/Teams";
import type { TeamRecord, UserRecord } from "./admin/types";
import { NewUser, UsersTable } from "./admin/Users";
import "./pages-admin-telemetry.css";

const VIEWS = [
  { path: "users", title: "Users" },
  { path: "teams", title: "Teams" },
] as const;

export function Admin({ route }: { route: string[] }) {
  const { user, isAdmin } = useSession();
  // Asked of everyone: for someone who is not an admin the platform's own answer (403)
  // is shown under the sentence below.
  const users = useLoad((signal) => api<UserRecord[]>("/users", { signal }), []);
  const teams = useLoad((signal) => api<TeamRecord[]>("/teams", { signal }), []);
  const view = route[0] === "teams" ? "teams" : "users";
  const page = currentRoute()[0] ?? "";
  const reloadUsers = users.reload;
  const reloadTeams = teams.reload;
  const reloadBoth = () => {
    reloadUsers();
    reloadTeams();
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
      <ErrorNote error={teams.error} />
      {view === "users" ? (
        <section aria-labelledby="users-title">
          <h2 id="users-title">Users</h2>
          <NewUser teams={teams.data ?? []} onCreated={reloadBoth} />
          <ErrorNote error={users.error} />
          <Loading loading={users.loading && !users.data} />
          {users.data && (
            <UsersTable
              users={users.data}
              teams={teams.data ?? []}
              me={user?.username}
              onChanged={reloadBoth}
            />
          )}
        </section>
      ) : (
        <section aria-labelledby="teams-title">
          <h2 id="teams-title">Teams</h2>
          <NewTeam onCreated={reloadTeams} />
          <ErrorNote error={users.error} />
          <Loading loading={teams.loading && !teams.data} />
          {teams.data && (
            <TeamsTable teams={teams.data} users={users.data} me={user?.username} onChanged={reloadBoth} />
          )}
        </section>
      )}
    </div>
  );
}
