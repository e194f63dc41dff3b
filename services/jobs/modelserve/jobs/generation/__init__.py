"""Queued generation (seed 003's `POST /generate`): prompts queued as a job on the
engine, each answered through the gateway as the job's owner; the generations are read
back from `GET /generate/{id}` when the job is done."""
