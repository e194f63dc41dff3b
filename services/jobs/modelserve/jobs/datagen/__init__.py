"""Data-generation jobs (`type` `data_gen`): Self-Instruct over the platform's own models,
written as JSONL shards to the platform store."""
