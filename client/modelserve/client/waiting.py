"""What a registration's state means to someone waiting for it."""

from __future__ import annotations

from modelserve.client.answers import Registration
from modelserve.client.errors import ModelServeError


def settled(job: Registration) -> bool:
    """True once the version is ready; raises for a registration that failed or was
    cancelled (its own error code), False while it runs."""
    if job.state == "ready":
        return True
    if job.finished:
        code = job.error.code if job.error and job.error.code else f"registration_{job.state}"
        message = job.error.message if job.error and job.error.message else job.state
        raise ModelServeError(code, f"{job.model_id}: {message}", None, job.model_dump(mode="json"))
    return False


def timed_out(model_id: str, job: Registration, timeout: float) -> ModelServeError:
    return ModelServeError(
        "timeout",
        f"registration of {model_id} still {job.state} after {timeout:g} s",
        None,
        job.model_dump(mode="json"),
    )
