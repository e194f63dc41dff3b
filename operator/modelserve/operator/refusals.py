"""Specs the operator refuses to run, whatever the admission webhook said (defence in
depth): pure checks, a `Refusal` for the status or None."""

from __future__ import annotations

from modelserve.common.modelserve import ModelServe, Runtime
from modelserve.common.owned_flags import expanded_args, owned_env, owned_flags
from modelserve.operator.status import Refusal


def spec_refusal(ms: ModelServe) -> Refusal | None:
    """A refusal of `args` or `env` that set what the operator sets itself (the model, the
    address, the served name, an API key): they would point the server at other weights or
    lock the gateway out."""
    if ms.spec.runtime is Runtime.EXTERNAL:
        return None
    runtime = ms.spec.runtime.value
    flags = owned_flags(runtime, ms.spec.args)
    if flags:
        return Refusal(
            "Ready",
            "OwnedFlag",
            f"spec.args sets {flags[0]!r}, a flag the operator sets itself: remove it",
        )
    expanded = expanded_args(ms.spec.args)
    if expanded:
        return Refusal(
            "Ready",
            "ArgExpansion",
            f"spec.args holds {expanded[0]!r}: Kubernetes would put a variable's value there"
            " after every check; write the value itself",
        )
    names = owned_env(runtime, [env.name for env in ms.spec.env])
    if names:
        return Refusal(
            "Ready",
            "OwnedFlag",
            f"spec.env sets {names[0]}, an option (or GPUs) the operator sets itself: remove it",
        )
    return None
