// GET /gpu and GET /system every few seconds while the page is open, each on its own (a
// slow cluster read of one does not hold up the other), and the last minutes of what they
// reported, for the charts. Nothing is kept after the page closes: the history is the
// time the page has been open.

import { useEffect, useReducer } from "react";
import { api, messageOf } from "../../api";
import type { Point } from "../../components/LineChart";
import type { GpuInventory, SystemView } from "./types";

export const POLL_MS = 5000;
export const HISTORY_MS = 10 * 60 * 1000;

export interface Polled<T> {
  data: T | null;
  error: string | null;
  at: number | null; // when `data` arrived (this browser's clock)
}

export interface History {
  gpuUtilisation: Record<string, Point[]>; // by "node GPU index"
  gpuMemory: Record<string, Point[]>; // GiB used
  hostLoad: Point[];
  hostMemory: Point[]; // percent used
  lastReport: Record<string, string>; // the node agent's report time last taken, by node
}

export interface Telemetry {
  gpu: Polled<GpuInventory>;
  system: Polled<SystemView>;
  history: History;
  openedAt: number | null; // the first answer's time
  now: number | null; // the latest answer's time
}

type Action =
  | { kind: "gpu"; t: number; data: GpuInventory }
  | { kind: "system"; t: number; data: SystemView }
  | { kind: "gpuError" | "systemError"; error: string };

const EMPTY: Telemetry = {
  gpu: { data: null, error: null, at: null },
  system: { data: null, error: null, at: null },
  history: { gpuUtilisation: {}, gpuMemory: {}, hostLoad: [], hostMemory: [], lastReport: {} },
  openedAt: null,
  now: null,
};

const REPORTED_AT = /reported at (\S+)$/;

// The time in a live node's `live_source` ("node agent (nvidia-smi), reported at …").
export function reportedAt(liveSource: string): string | null {
  return REPORTED_AT.exec(liveSource)?.[1] ?? null;
}

export function gpuKey(node: string, index: number): string {
  return `${node} GPU ${index}`;
}

function recent(points: Point[], since: number): Point[] {
  const first = points.findIndex(([t]) => t >= since);
  return first < 0 ? [] : first === 0 ? points : points.slice(first);
}

function appended(
  series: Record<string, Point[]>,
  added: Record<string, Point>,
  since: number,
): Record<string, Point[]> {
  const next: Record<string, Point[]> = {};
  for (const key of new Set([...Object.keys(series), ...Object.keys(added)])) {
    const point = added[key];
    const points = recent(point ? [...(series[key] ?? []), point] : (series[key] ?? []), since);
    if (points.length) next[key] = points;
  }
  return next;
}

function withGpu(history: History, t: number, data: GpuInventory): History {
  const utilisation: Record<string, Point> = {};
  const memory: Record<string, Point> = {};
  const lastReport = { ...history.lastReport };
  for (const node of data.nodes) {
    if (!node.live) continue;
    // Polled more often than the agents report: a report is taken once.
    const at = reportedAt(node.live_source);
    if (at !== null && lastReport[node.node] === at) continue;
    if (at !== null) lastReport[node.node] = at;
    for (const gpu of node.live) {
      const key = gpuKey(node.node, gpu.index);
      if (gpu.utilization_gpu !== null) utilisation[key] = [t, gpu.utilization_gpu];
      if (gpu.memory_used_mb !== null) memory[key] = [t, gpu.memory_used_mb / 1024];
    }
  }
  const since = t - HISTORY_MS;
  return {
    ...history,
    gpuUtilisation: appended(history.gpuUtilisation, utilisation, since),
    gpuMemory: appended(history.gpuMemory, memory, since),
    hostLoad: recent(history.hostLoad, since),
    hostMemory: recent(history.hostMemory, since),
    lastReport,
  };
}

function withSystem(history: History, t: number, data: SystemView): History {
  const since = t - HISTORY_MS;
  const host = data.gateway_host;
  return {
    ...history,
    hostLoad: recent(host ? [...history.hostLoad, [t, host.cpu_load]] : history.hostLoad, since),
    hostMemory: recent(
      host ? [...history.hostMemory, [t, host.ram_percent]] : history.hostMemory,
      since,
    ),
  };
}

function reduce(state: Telemetry, action: Action): Telemetry {
  switch (action.kind) {
    case "gpu":
      return {
        ...state,
        gpu: { data: action.data, error: null, at: action.t },
        history: withGpu(state.history, action.t, action.data),
        openedAt: state.openedAt ?? action.t,
        now: Math.max(state.now ?? action.t, action.t),
      };
    case "system":
      return {
        ...state,
        system: { data: action.data, error: null, at: action.t },
        history: withSystem(state.history, action.t, action.data),
        openedAt: state.openedAt ?? action.t,
        now: Math.max(state.now ?? action.t, action.t),
      };
    case "gpuError":
      return { ...state, gpu: { ...state.gpu, error: action.error } };
    case "systemError":
      return { ...state, system: { ...state.system, error: action.error } };
  }
}

export function useTelemetry(): Telemetry {
  const [state, dispatch] = useReducer(reduce, EMPTY);

  useEffect(() => {
    const controller = new AbortController();

    // One path, again POLL_MS after each call began (or when it ended, if it took longer).
    // Answers the function that stops it.
    function poll(
      path: string,
      done: (t: number, data: unknown) => void,
      failed: (error: string) => void,
    ): () => void {
      let timer: number | undefined;
      const once = async () => {
        const started = Date.now();
        try {
          const data = await api<unknown>(path, { signal: controller.signal });
          if (!controller.signal.aborted) done(Date.now(), data);
        } catch (error) {
          if (controller.signal.aborted) return;
          failed(messageOf(error));
        }
        if (!controller.signal.aborted) {
          timer = window.setTimeout(once, Math.max(0, POLL_MS - (Date.now() - started)));
        }
      };
      void once();
      return () => window.clearTimeout(timer);
    }

    const stops = [
      poll(
        "/gpu",
        (t, data) => dispatch({ kind: "gpu", t, data: data as GpuInventory }),
        (error) => dispatch({ kind: "gpuError", error }),
      ),
      poll(
        "/system",
        (t, data) => dispatch({ kind: "system", t, data: data as SystemView }),
        (error) => dispatch({ kind: "systemError", error }),
      ),
    ];
    return () => {
      controller.abort();
      for (const stop of stops) stop();
    };
  }, []);

  return state;
}
