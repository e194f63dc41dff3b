// Telemetry: the GPUs (GET /gpu, every 5 s: nodes, types, who holds them, live figures
// from node agents or why there are none), the power profile (admins choose it), and the
// system (GET /system, every 5 s: nodes' requests against allocatable, the gateway's
// host; admins also the gateway process and the platform's pods), with charts of what
// was reported while the page has been open; versions and settings (GET /version, /info).

import { currentRoute, href } from "../route";
import { useSession } from "../session";
import { About } from "./telemetry/About";
import { GpusView } from "./telemetry/Gpus";
import { PowerProfile } from "./telemetry/Power";
import { SystemViewPanel } from "./telemetry/System";
import { HISTORY_MS, useTelemetry } from "./telemetry/useTelemetry";
import "./pages-admin-telemetry.css";

const VIEWS = [
  { path: "gpus", title: "GPUs" },
  { path: "system", title: "System" },
] as const;

export function Telemetry({ route }: { route: string[] }) {
  const { isAdmin } = useSession();
  const telemetry = useTelemetry();
  const view = route[0] === "system" ? "system" : "gpus";
  const page = currentRoute()[0] ?? "";
  const to = telemetry.now;
  const from =
    to === null || telemetry.openedAt === null
      ? null
      : Math.min(Math.max(telemetry.openedAt, to - HISTORY_MS), to - 60_000);

  return (
    <div className="ms-page">
      <nav aria-label="Telemetry" className="subnav">
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
      {view === "gpus" ? (
        <>
          <section aria-labelledby="gpus-title">
            <h2 id="gpus-title">GPUs</h2>
            <GpusView gpu={telemetry.gpu} history={telemetry.history} from={from} to={to} />
          </section>
          <PowerProfile isAdmin={isAdmin} />
        </>
      ) : (
        <>
          <section aria-labelledby="system-title">
            <h2 id="system-title">System</h2>
            <SystemViewPanel system={telemetry.system} history={telemetry.history} from={from} to={to} />
          </section>
          <About />
        </>
      )}
    </div>
  );
}
