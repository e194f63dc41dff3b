"""The jobs service behind the gateway's door: /jobs, the OpenAI Batch API (/v1/files,
/v1/batches), evaluation, data generation and queued generation, passed through as the
caller."""
