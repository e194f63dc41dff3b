// GET /system: the nodes' CPU, memory and GPUs (capacity, allocatable, requests), the host
// of the gateway replica that answered, and for admins the gateway process and the
// platform's pods; with charts of the host's load and memory while the page is open.

import { Fragment } from "react";
import { ErrorNote, Loading } from "../../components/Load";
import { cores, duration, gib, percentOf, round, when } from "./format";
import { LineChart } from "../../components/LineChart";
import type { SystemNode, SystemView } from "./types";
import type { History, Polled } from "./useTelemetry";
import { POLL_MS } from "./useTelemetry";

const UNAVAILABLE_NAMES: Record<string, string> = {
  nodes: "Nodes",
  requests: "Requests on the nodes",
  platform_pods: "The platform's pods",
  gateway_host: "The gateway's host",
  gateway_process: "The gateway process",
};

export function SystemViewPanel({
  system,
  history,
  from,
  to,
}: {
  system: Polled<SystemView>;
  history: History;
  from: number | null;
  to: number | null;
}) {
  const data = system.data;
  const host = data?.gateway_host ?? null;
  const unavailable = Object.entries(data?.unavailable ?? {});
  return (
    <>
      <ErrorNote error={system.error} />
      <Loading loading={!data && !system.error}>Reading the system…</Loading>
      {data && (
        <>
          <p className="muted">
            As of {when(system.at)}, read every {POLL_MS / 1000} s.
          </p>
          {unavailable.length > 0 && (
            <div className="notice">
              <p>Not everything could be read:</p>
              <ul>
                {unavailable.map(([field, why]) => (
                  <li key={field}>
                    {UNAVAILABLE_NAMES[field] ?? field}: {why}
                  </li>
                ))}
              </ul>
            </div>
          )}
          <NodesTable nodes={data.nodes} />
          <h3>The gateway's host</h3>
          {host ? (
            <dl className="facts">
              <dt>CPU load (1 minute)</dt>
              <dd>
                {round(host.cpu_load, 2)}
                {host.cpu_count !== null && ` on ${host.cpu_count} CPUs`}
              </dd>
              <dt>Memory used</dt>
              <dd>
                {round(host.ram_used_gb)} GB of {round(host.ram_total_gb)} GB ({round(host.ram_percent)} %)
              </dd>
              {host.disk.map((disk) => (
                <Fragment key={disk.mount}>
                  <dt>Disk {disk.mount}</dt>
                  <dd>
                    {round(disk.used_gb)} GB of {round(disk.total_gb)} GB ({round(disk.percent)} %)
                  </dd>
                </Fragment>
              ))}
            </dl>
          ) : (
            <p>The host's figures could not be read.</p>
          )}
          <p className="muted">
            The host of the gateway replica that answered: with several replicas, another may
            answer the next read. In a container these are the node's figures.
          </p>
          {data.platform && <Platform platform={data.platform} />}
        </>
      )}
      {from !== null && to !== null && (
        <section aria-labelledby="host-charts" className="charts">
          <h3 id="host-charts">Host history</h3>
          <p className="muted">
            These charts cover only the time this page has been open (at most the last 10
            minutes), one point per answer of <code>GET /system</code>.
          </p>
          <div className="chart-grid">
            <LineChart
              title={`Host CPU load, 1-minute average${
                host?.cpu_count ? ` (${host.cpu_count} CPUs)` : ""
              }`}
              series={[{ label: "CPU load", points: history.hostLoad }]}
              unit=""
              from={from}
              to={to}
              maxGapMs={4 * POLL_MS}
            />
            <LineChart
              title="Host memory used"
              series={[{ label: "Memory used", points: history.hostMemory }]}
              unit=" %"
              from={from}
              to={to}
              yMax={100}
              maxGapMs={4 * POLL_MS}
              format={(v) => round(v, 1)}
            />
          </div>
        </section>
      )}
    </>
  );
}

function Use({ requested, allocatable, text }: { requested: number | null; allocatable: number; text: (v: number) => string }) {
  if (requested === null) return <span className="muted">requests unknown</span>;
  return (
    <>
      {text(requested)} of {text(allocatable)}
      <div className="muted">{percentOf(requested, allocatable)} requested</div>
    </>
  );
}

function NodesTable({ nodes }: { nodes: SystemNode[] }) {
  if (nodes.length === 0) return <p>No nodes are listed.</p>;
  return (
    <div className="table-scroll">
      <table>
        <caption>Nodes: requests of their pods against what is allocatable</caption>
        <thead>
          <tr>
            <th scope="col">Node</th>
            <th scope="col">State</th>
            <th scope="col">CPU</th>
            <th scope="col">Memory</th>
            <th scope="col">GPUs</th>
            <th scope="col">Pods</th>
          </tr>
        </thead>
        <tbody>
          {nodes.map((node) => (
            <tr key={node.name}>
              <th scope="row">
                {node.name}
                {node.gpu_product && <div className="muted">{node.gpu_product}</div>}
              </th>
              <td>
                {node.ready ? "ready" : <strong>not ready</strong>}
                {node.unschedulable && <div>cordoned</div>}
              </td>
              <td>
                <Use requested={node.requests?.cpu ?? null} allocatable={node.allocatable.cpu} text={cores} />
                <div className="muted">capacity {cores(node.capacity.cpu)}</div>
              </td>
              <td>
                <Use requested={node.requests?.memory ?? null} allocatable={node.allocatable.memory} text={gib} />
                <div className="muted">capacity {gib(node.capacity.memory)}</div>
              </td>
              <td>
                {node.capacity["nvidia.com/gpu"] === 0 ? (
                  <span className="muted">none</span>
                ) : (
                  <Use
                    requested={node.requests?.["nvidia.com/gpu"] ?? null}
                    allocatable={node.allocatable["nvidia.com/gpu"]}
                    text={(v) => String(v)}
                  />
                )}
              </td>
              <td>{node.pods ?? <span className="muted">unknown</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Platform({ platform }: { platform: NonNullable<SystemView["platform"]> }) {
  const process = platform.gateway_process;
  return (
    <section aria-labelledby="platform-title">
      <h3 id="platform-title">The platform (admins)</h3>
      {process ? (
        <dl className="facts">
          <dt>Gateway process</dt>
          <dd>
            pid {process.pid}, up {duration(process.uptime_seconds)}
          </dd>
          <dt>Resident memory</dt>
          <dd>{process.rss_bytes === null ? "not given" : gib(process.rss_bytes)}</dd>
          <dt>CPU time</dt>
          <dd>{round(process.cpu_seconds, 1)} s</dd>
          <dt>Threads, open files</dt>
          <dd>
            {process.threads}, {process.open_fds}
          </dd>
        </dl>
      ) : (
        <p>The gateway process's figures could not be read.</p>
      )}
      {platform.pods === null ? (
        <p>The platform's pods could not be listed.</p>
      ) : platform.pods.length === 0 ? (
        <p>
          No platform pods in {platform.namespaces.join(", ") || "the platform namespaces"} (the
          services may run as processes, as on the test bed).
        </p>
      ) : (
        <div className="table-scroll">
          <table>
            <caption>The platform's pods ({platform.namespaces.join(", ")})</caption>
            <thead>
              <tr>
                <th scope="col">Pod</th>
                <th scope="col">Component</th>
                <th scope="col">Phase</th>
                <th scope="col">Restarts</th>
                <th scope="col">Node</th>
                <th scope="col">Started</th>
              </tr>
            </thead>
            <tbody>
              {platform.pods.map((pod) => (
                <tr key={`${pod.namespace}/${pod.name}`}>
                  <th scope="row">
                    {pod.name}
                    <div className="muted">{pod.namespace}</div>
                  </th>
                  <td>{pod.component ?? "–"}</td>
                  <td>
                    {pod.phase ?? "unknown"}
                    {pod.ready ? ", ready" : ", not ready"}
                  </td>
                  <td>{pod.restarts}</td>
                  <td>{pod.node ?? "–"}</td>
                  <td>{pod.started ? new Date(pod.started).toLocaleString() : "–"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
