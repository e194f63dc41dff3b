"""The OpenAI Batch API (`/v1/batches`): a batch is a job of type `batch` whose items are
the lines of its input file, each sent to the gateway as the batch's owner; its output
and error files are OpenAI Files (docs/batches.md)."""
