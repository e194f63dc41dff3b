"""The cluster's GPUs: GET /gpu (inventory, allocations, node agents' live figures), the GPU
summary of GET /health, and power profiles (GET/POST /settings/power_profile)."""
