"""The client's side of the jobs service (issue 17): `/jobs`, evaluation, data generation
and `POST /generate` as calls and typed answers, `wait_for_job`'s rules and the CLI's
progress bar of a job. The Batch API is the official `openai` client's (docs/client.md)."""
