// GET /gpu: the GPU nodes and types, who holds the GPUs, each GPU's live figures where a
// node agent reports them (else why not, in the platform's words), and the charts of
// what was reported while the page has been open.

import { ErrorNote, Loading } from "../../components/Load";
import { round, when, whyNoFigures } from "./format";
import { LineChart } from "../../components/LineChart";
import type { Series } from "../../components/LineChart";
import type { Allocation, GpuFigures, GpuInventory, GpuNode } from "./types";
import type { History, Polled } from "./useTelemetry";
import { POLL_MS } from "./useTelemetry";

type Figure = Exclude<keyof GpuFigures, "index" | "uuid" | "name" | "driver_version" | "unavailable">;

// A figure, or why nvidia-smi gave none (what it printed).
function Value({ gpu, field, render }: { gpu: GpuFigures; field: Figure; render: (v: number) => string }) {
  const value = gpu[field];
  if (value !== null) return <>{render(value)}</>;
  const printed = gpu.unavailable[field];
  return <span className="muted">{printed ? `not given (${printed})` : "not given"}</span>;
}

function AllocationText({ allocation }: { allocation: Allocation }) {
  const count = `${allocation.gpus} GPU${allocation.gpus === 1 ? "" : "s"}`;
  if (allocation.server) {
    return (
      <>
        {allocation.server} <span className="muted">({allocation.namespace}, {count})</span>
      </>
    );
  }
  if (allocation.pod) {
    return (
      <>
        pod {allocation.pod} <span className="muted">({allocation.namespace}, {count})</span>
      </>
    );
  }
  return <span className="muted">{count} held by others (not shown to you)</span>;
}

function series(byKey: Record<string, [number, number][]>): Series[] {
  return Object.keys(byKey)
    .sort()
    .map((label) => ({ label, points: byKey[label] ?? [] }));
}

export function GpusView({
  gpu,
  history,
  from,
  to,
}: {
  gpu: Polled<GpuInventory>;
  history: History;
  from: number | null;
  to: number | null;
}) {
  const data = gpu.data;
  const utilisation = series(history.gpuUtilisation);
  const memory = series(history.gpuMemory);
  return (
    <>
      <ErrorNote error={gpu.error} />
      <Loading loading={!data && !gpu.error}>Reading the GPUs…</Loading>
      {data && (
        <>
          <p>
            {data.totals.nodes} GPU node{data.totals.nodes === 1 ? "" : "s"}, {data.totals.capacity} GPUs (
            {data.totals.allocatable} allocatable, {data.totals.allocated} allocated);{" "}
            {data.totals.gpus_with_live_figures} with live figures.{" "}
            <span className="muted">
              As of {when(gpu.at)}, read every {POLL_MS / 1000} s.
            </span>
          </p>
          {data.nodes.length === 0 ? (
            <p>The cluster advertises no GPUs (no node has <code>nvidia.com/gpu</code>).</p>
          ) : (
            <>
              <TypesTable data={data} />
              <NodesTable nodes={data.nodes} />
              {data.nodes.map((node) => (
                <LiveFigures key={node.node} node={node} />
              ))}
            </>
          )}
        </>
      )}
      {from !== null && to !== null && (utilisation.length > 0 || memory.length > 0) && (
        <section aria-labelledby="gpu-charts" className="charts">
          <h3 id="gpu-charts">GPU history</h3>
          <p className="muted">
            These charts cover only the time this page has been open (at most the last 10
            minutes), one point per node agent report taken, at the time this browser received
            it.
          </p>
          <div className="chart-grid">
            <LineChart
              title="GPU utilisation"
              series={utilisation}
              unit=" %"
              from={from}
              to={to}
              yMax={100}
              maxGapMs={45_000}
              format={(v) => round(v, 0)}
            />
            <LineChart
              title="GPU memory used"
              series={memory}
              unit=" GiB"
              from={from}
              to={to}
              maxGapMs={45_000}
            />
          </div>
        </section>
      )}
      {data && data.nodes.length > 0 && utilisation.length === 0 && memory.length === 0 && (
        <p className="muted">
          No GPU history to chart: no node agent has reported live figures while this page has
          been open.
        </p>
      )}
    </>
  );
}

function TypesTable({ data }: { data: GpuInventory }) {
  return (
    <table>
      <caption>GPU types</caption>
      <thead>
        <tr>
          <th scope="col">Type</th>
          <th scope="col">Nodes</th>
          <th scope="col">GPUs</th>
          <th scope="col">Allocatable</th>
          <th scope="col">Allocated</th>
        </tr>
      </thead>
      <tbody>
        {data.types.map((kind) => (
          <tr key={kind.gpu_type ?? ""}>
            <td>{kind.gpu_type ?? <span className="muted">not labelled</span>}</td>
            <td>{kind.nodes.join(", ")}</td>
            <td>{kind.capacity}</td>
            <td>{kind.allocatable}</td>
            <td>{kind.allocated}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function NodesTable({ nodes }: { nodes: GpuNode[] }) {
  return (
    <div className="table-scroll">
      <table>
        <caption>GPU nodes</caption>
        <thead>
          <tr>
            <th scope="col">Node</th>
            <th scope="col">Type</th>
            <th scope="col">GPUs</th>
            <th scope="col">Allocatable</th>
            <th scope="col">Allocated</th>
            <th scope="col">Free</th>
            <th scope="col">Held by</th>
            <th scope="col">Live figures</th>
          </tr>
        </thead>
        <tbody>
          {nodes.map((node) => (
            <tr key={node.node}>
              <th scope="row">{node.node}</th>
              <td>{node.gpu_type ?? <span className="muted">not labelled</span>}</td>
              <td>{node.capacity}</td>
              <td>{node.allocatable}</td>
              <td>{node.allocated}</td>
              <td>{node.free}</td>
              <td>
                {node.allocations.length === 0 ? (
                  <span className="muted">nothing</span>
                ) : (
                  <ul className="plain">
                    {node.allocations.map((allocation, i) => (
                      <li key={allocation.pod ?? `others-${i}`}>
                        <AllocationText allocation={allocation} />
                      </li>
                    ))}
                  </ul>
                )}
              </td>
              <td>{node.live ? node.live_source : <span className="muted">{whyNoFigures(node.live_source)}</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function LiveFigures({ node }: { node: GpuNode }) {
  if (!node.live) {
    return (
      <p>
        <strong>{node.node}</strong>: no live figures. {whyNoFigures(node.live_source)}.
      </p>
    );
  }
  if (node.live.length === 0) {
    return (
      <p>
        <strong>{node.node}</strong>: the node agent reports no GPUs ({node.live_source}).
      </p>
    );
  }
  return (
    <div className="table-scroll">
      <table>
        <caption>
          {node.node}: live figures <span className="muted">({node.live_source})</span>
        </caption>
        <thead>
          <tr>
            <th scope="col">GPU</th>
            <th scope="col">Utilisation</th>
            <th scope="col">Memory used</th>
            <th scope="col">Power</th>
            <th scope="col">Temperature</th>
            <th scope="col">Fan</th>
          </tr>
        </thead>
        <tbody>
          {node.live.map((gpu) => (
            <tr key={gpu.index}>
              <th scope="row">
                {gpu.index}
                <div className="muted">
                  {gpu.name ?? "name not given"}
                  {gpu.driver_version ? `, driver ${gpu.driver_version}` : ""}
                </div>
              </th>
              <td>
                <Value gpu={gpu} field="utilization_gpu" render={(v) => `${round(v, 0)} %`} />
                <div className="muted">
                  memory controller{" "}
                  <Value gpu={gpu} field="utilization_mem" render={(v) => `${round(v, 0)} %`} />
                </div>
              </td>
              <td>
                <Value gpu={gpu} field="memory_used_mb" render={(v) => `${round(v / 1024)} GiB`} /> of{" "}
                <Value gpu={gpu} field="memory_total_mb" render={(v) => `${round(v / 1024)} GiB`} />
              </td>
              <td>
                <Value gpu={gpu} field="power_draw_w" render={(v) => `${round(v)} W`} />
                <div className="muted">
                  limit <Value gpu={gpu} field="power_limit_w" render={(v) => `${round(v)} W`} />
                </div>
              </td>
              <td>
                <Value gpu={gpu} field="temperature_gpu" render={(v) => `${round(v, 0)} °C`} />
              </td>
              <td>
                <Value gpu={gpu} field="fan_speed_pct" render={(v) => `${round(v, 0)} %`} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
