"""The test bed: real Kubernetes, PostgreSQL, MinIO and an LLM server as local processes.

Everything here exists so that tests and `make dev` talk to the real components that
ModelServe talks to in production, started from pinned, locally built binaries.
"""
