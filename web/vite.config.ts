// The UI is served by the gateway under /ui (its build, dist/, is what the gateway serves);
// `make frontend` runs this dev server on 5173, which passes the API's paths on to the
// gateway of `make dev` (MODELSERVE_GATEWAY_URL, by default http://127.0.0.1:8200).
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const gateway = process.env.MODELSERVE_GATEWAY_URL ?? "http://127.0.0.1:8200";
const apiPaths = [
  "/auth",
  "/users",
  "/teams",
  "/models",
  "/serve",
  "/status",
  "/stop",
  "/scale",
  "/download",
  "/downloads",
  "/configure",
  "/v1",
  "/arena",
  "/jobs",
  "/eval",
  "/data_gen",
  "/generate",
  "/usage",
  "/contracts",
  "/gpu",
  "/system",
  "/info",
  "/version",
  "/health",
  "/settings",
  "/logs",
];

export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  server: {
    host: "127.0.0.1",
    port: 5173, // `make frontend FRONTEND_PORT=…` picks another
    strictPort: true,
    proxy: Object.fromEntries(apiPaths.map((path) => [path, { target: gateway }])),
  },
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
});
