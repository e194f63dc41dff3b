// Servers: the caller's servers (GET /status; admins: all), live, with their phase and
// loading state; serve a model (POST /serve); one server's detail at #/servers/<id>.

import { useState } from "react";
import { ServeForm } from "./servers/ServeForm";
import { ServerDetail } from "./servers/ServerDetail";
import { ServerList } from "./servers/ServerList";
import "./servers/servers.css";

export function Servers({ route }: { route: string[] }) {
  const [version, setVersion] = useState(0);
  const id = route[0];
  if (id) return <ServerDetail key={id} id={id} />;
  return (
    <>
      <ServeForm onServed={() => setVersion((n) => n + 1)} />
      <ServerList version={version} />
    </>
  );
}
