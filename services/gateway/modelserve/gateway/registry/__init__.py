"""The model registry as the gateway offers it: its one client of the download service, the
routes it passes through as the caller, set-active and the rollbacks it reports."""
