"""Evaluation jobs (seed 003's `/eval/jobs`): a model's accuracy and loss over a JSONL
dataset in the platform store, one item per example, each asked through the gateway as
the job's owner (optionally under inference-time scaling) and judged with the answer
extraction self-consistency uses (`modelserve.common.answers`)."""
