"""The gateway's operations API: GET /info, /version, /config, /system and /logs/{component}.

Pure builders turn what the cluster and /proc say into answers (`quantities`, `nodes`,
`procfs`, `redaction`, `facts`, `logs`); `cluster` is the one module that reads the
Kubernetes API (in threads, as the rest of the gateway does); `routes` stays thin.
"""
