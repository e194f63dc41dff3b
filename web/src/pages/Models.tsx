// Models: the model records (downloaded and registered versions), each name's active
// version and the rollout of its servers, set active / roll back, downloading a model from
// the upstream store and following it, registering a version, and the history of active
// versions (docs/registry.md, docs/download.md).

import { useCallback, useMemo, useState } from "react";
import { api, messageOf } from "../api";
import { ErrorNote, Loading, useLoad } from "../components/Load";
import { usePolling } from "../components/polling";
import { ActivationNote } from "./models/ActivationNote";
import { ActiveVersions } from "./models/ActiveVersions";
import { DownloadForm } from "./models/DownloadForm";
import { DownloadList } from "./models/DownloadList";
import { History } from "./models/History";
import { ModelTable } from "./models/ModelTable";
import { RegisterForm } from "./models/RegisterForm";
import { setActive } from "./models/setActive";
import { rollingOut } from "./models/types";
import type { Activation, ActiveModel, HistoryEntry, ModelRecord } from "./models/types";
import "./pages-jobs-models.css";

export function Models({ route }: { route: string[] }) {
  const nameInRoute = route[0] ?? ""; // #/models/<name>: that name's versions
  const active = useLoad((signal) => api<ActiveModel[]>("/models/active", { signal }), []);
  const reloadActive = active.reload;
  const [version, setVersion] = useState(0);
  const [started, setStarted] = useState(0); // bumped when a download is started
  const [activation, setActivation] = useState<Activation | null>(null);
  const [error, setError] = useState<string | null>(null);
  const live = rollingOut(active.data);
  usePolling(live, active.refresh);

  const byName = useMemo(
    () => new Map((active.data ?? []).map((model) => [model.name, model])),
    [active.data],
  );
  const activeIds = useMemo(
    () => new Map([...byName.values()].map((model) => [model.name, model.id])),
    [byName],
  );

  const changed = useCallback(() => {
    reloadActive();
    setVersion((n) => n + 1);
  }, [reloadActive]);

  async function activate(id: string, question: string) {
    setError(null);
    try {
      const answer = await setActive(id, question);
      if (answer) {
        setActivation(answer);
        changed();
      }
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  function setRecordActive(record: ModelRecord) {
    const current = activeIds.get(record.name);
    void activate(
      record.id,
      `Make ${record.id} the active version of ${record.name}${current ? ` (now ${current})` : ""}? Your servers of that name roll to it.`,
    );
  }

  function rollBackEntry(entry: HistoryEntry) {
    if (entry.from_id === null) return;
    void activate(entry.from_id, `Roll ${entry.name} back from ${entry.to_id ?? "none"} to ${entry.from_id}?`);
  }

  // The entry that last moved the name's pointer says which version was active before.
  async function rollBackModel(model: ActiveModel) {
    setError(null);
    try {
      const entries = await api<HistoryEntry[]>("/models/history", { query: { name: model.name, limit: 1000 } });
      const entry = entries.find((found) => found.id === model.history_id);
      if (!entry || entry.from_id === null) {
        setError(`The history of ${model.name} records no version active before ${model.id}: nothing to roll back to.`);
      } else if (entry.action !== "set_active") {
        setError(
          `${model.name} was last changed by an automatic rollback (${entry.from_id} failed, ${model.id} restored); set another version active from the table instead.`,
        );
      } else {
        rollBackEntry(entry);
      }
    } catch (failure) {
      setError(messageOf(failure));
    }
  }

  return (
    <div className="jm-page">
      <section aria-labelledby="active-title">
        <h2 id="active-title">Active versions and rollouts</h2>
        <ErrorNote error={error ?? active.error} />
        {activation && (
          <ActivationNote activation={activation} servers={byName.get(activation.name)?.servers ?? activation.servers} />
        )}
        <Loading loading={active.loading && !active.data} />
        {active.data && <ActiveVersions active={active.data} live={live} onRollBack={rollBackModel} />}
      </section>
      <ModelTable key={nameInRoute} initialName={nameInRoute} activeIds={activeIds} version={version} onSetActive={setRecordActive} />
      <DownloadForm onStarted={() => setStarted((n) => n + 1)} />
      <DownloadList version={started + version} onReady={changed} />
      <RegisterForm onRegistered={changed} />
      <History active={byName} version={version} onRollBack={rollBackEntry} />
    </div>
  );
}
