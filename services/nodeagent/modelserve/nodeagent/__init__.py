"""The node agent: a DaemonSet on GPU nodes that reports the node's GPUs (nvidia-smi) in a
Lease and applies the platform's power profile as a GPU power limit."""
