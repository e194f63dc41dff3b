// GET /version and GET /info: what runs, and the settings that matter to a caller.

import { api } from "../../api";
import { ErrorNote, Loading, useLoad } from "../../components/Load";
import type { InfoView, VersionView } from "./types";

export function About() {
  const version = useLoad((signal) => api<VersionView>("/version", { signal }), []);
  const info = useLoad((signal) => api<InfoView>("/info", { signal }), []);
  const v = version.data;
  const i = info.data;
  const why = v?.unavailable ?? {};
  return (
    <section aria-labelledby="about-title">
      <h2 id="about-title">Versions and settings</h2>
      <ErrorNote error={version.error} />
      <ErrorNote error={info.error} />
      <Loading loading={(version.loading && !v) || (info.loading && !i)} />
      {v && (
        <dl className="facts">
          <dt>Platform</dt>
          <dd>
            {v.platform_version} (API {v.api_version}, Python {v.python_version})
          </dd>
          <dt>Kubernetes</dt>
          <dd>{why.kubernetes_version ? `unknown: ${why.kubernetes_version}` : v.kubernetes_version}</dd>
          <dt>Model server images</dt>
          <dd>
            {typeof v.runtime_images === "string" ? (
              `unknown: ${why.runtime_images ?? v.runtime_images}`
            ) : v.runtime_images.length === 0 ? (
              "none deployed"
            ) : (
              <ul className="plain">
                {v.runtime_images.map((image) => (
                  <li key={`${image.image} ${image.runtime ?? ""}`}>
                    <code>{image.image}</code> ({image.runtime ?? "runtime not labelled"},{" "}
                    {image.deployments} deployment{image.deployments === 1 ? "" : "s"})
                  </li>
                ))}
              </ul>
            )}
          </dd>
        </dl>
      )}
      {i && (
        <dl className="facts">
          <dt>Cluster</dt>
          <dd>
            {i.cluster.connected ? "connected" : "not connected"}; namespaces served:{" "}
            {typeof i.cluster.watch_namespaces === "string"
              ? "all"
              : i.cluster.watch_namespaces.join(", ")}
            ; platform: {i.cluster.platform_namespaces.join(", ")}
          </dd>
          <dt>Services</dt>
          <dd>
            {Object.entries(i.services)
              .map(([name, on]) => `${name} ${on ? "configured" : "not configured"}`)
              .join(", ")}
          </dd>
          <dt>Sign-in</dt>
          <dd>
            {i.auth.modes.join(", ")}; tokens ({i.auth.token_algorithm}) live{" "}
            {i.auth.token_expiry_minutes} minutes
          </dd>
        </dl>
      )}
    </section>
  );
}
