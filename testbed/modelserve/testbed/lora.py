"""A small LoRA adapter for a GGUF model, made on the spot with the `gguf` package.

llama.cpp reads an adapter as a GGUF file of `general.type` adapter, `adapter.type` lora
and `adapter.lora.alpha`, holding for each adapted weight `W` (ggml shape [n_in, n_out])
two tensors: `<W>.lora_a` ([n_in, rank]) and `<W>.lora_b` ([rank, n_out]). This one
adapts every attention query projection with seeded random factors, strong enough that
greedy decoding visibly changes: what a test needs to tell the adapter's answers from
the model's, not a trained adapter.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

ADAPTED = "attn_q.weight"


def write_lora(base: Path, target: Path, *, rank: int = 8, seed: int = 7) -> Path:
    """A LoRA GGUF for the model in `base` at `target` (its architecture and shapes)."""
    reader = gguf.GGUFReader(base)
    architecture = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(target, str(architecture))
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    rng = np.random.default_rng(seed)
    adapted = 0
    for tensor in reader.tensors:
        if not tensor.name.endswith(ADAPTED):
            continue
        n_in, n_out = int(tensor.shape[0]), int(tensor.shape[1])
        # numpy's shapes are ggml's reversed.
        writer.add_tensor(f"{tensor.name}.lora_a", rng.normal(0, 0.5, (rank, n_in)).astype("f4"))
        writer.add_tensor(f"{tensor.name}.lora_b", rng.normal(0, 0.5, (n_out, rank)).astype("f4"))
        adapted += 1
    if not adapted:
        raise ValueError(f"{base} has no {ADAPTED} tensor to adapt")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
