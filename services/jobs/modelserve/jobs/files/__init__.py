"""OpenAI Files (`/v1/files`): JSONL files uploaded for the Batch API and the output files
of batches, their content in the platform store (docs/batches.md)."""
