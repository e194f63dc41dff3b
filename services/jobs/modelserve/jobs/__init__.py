"""The jobs service: a durable engine of leased job items, and /jobs."""
