// The shell: sign-in, or the navigation and the page the URL names.

import type { ComponentType } from "react";
import { Admin } from "./pages/Admin";
import { Arena } from "./pages/Arena";
import { Jobs } from "./pages/Jobs";
import { Keys } from "./pages/Keys";
import { Models } from "./pages/Models";
import { Playground } from "./pages/Playground";
import { Servers } from "./pages/Servers";
import { Telemetry } from "./pages/Telemetry";
import { Usage } from "./pages/Usage";
import { SignIn } from "./pages/SignIn";
import { href, useRoute } from "./route";
import { useSession } from "./session";

interface PageEntry {
  path: string;
  title: string;
  page: ComponentType<{ route: string[] }>;
  adminOnly?: boolean;
}

export const PAGES: PageEntry[] = [
  { path: "servers", title: "Servers", page: Servers },
  { path: "models", title: "Models", page: Models },
  { path: "playground", title: "Playground", page: Playground },
  { path: "arena", title: "Arena", page: Arena },
  { path: "jobs", title: "Jobs", page: Jobs },
  { path: "usage", title: "Usage and limits", page: Usage },
  { path: "telemetry", title: "GPUs and system", page: Telemetry },
  { path: "keys", title: "API keys", page: Keys },
  { path: "admin", title: "Users and teams", page: Admin, adminOnly: true },
];

export function App() {
  const { user, isAdmin, signOut } = useSession();
  const route = useRoute();
  if (!user) return <SignIn />;
  const visible = PAGES.filter((entry) => isAdmin || !entry.adminOnly);
  const current = visible.find((entry) => entry.path === route[0]) ?? visible[0];
  if (!current) return null;
  const Page = current.page;
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to the page
      </a>
      <header>
        <span className="brand">ModelServe</span>
        <span className="who">
          {user.username}
          {isAdmin ? " (admin)" : ""}
        </span>
        <button type="button" onClick={() => signOut()}>
          Sign out
        </button>
      </header>
      <nav aria-label="Pages">
        <ul>
          {visible.map((entry) => (
            <li key={entry.path}>
              <a href={href(entry.path)} aria-current={entry === current ? "page" : undefined}>
                {entry.title}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        <h1>{current.title}</h1>
        <Page route={route.slice(1)} />
      </main>
    </div>
  );
}
