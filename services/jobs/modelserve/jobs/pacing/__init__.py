"""How many items of a model the engine runs at once: a cap of its own, bounded by the
power profile's concurrency, and an AIMD controller per model that halves it while
online requests slow down and adds one back while they are calm (docs/jobs.md)."""
