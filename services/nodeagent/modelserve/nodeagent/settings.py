"""Settings of the node agent, read from NODEAGENT_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NodeAgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NODEAGENT_")

    node_name: str = Field(min_length=1, max_length=253)
    """The node this agent runs on (the chart sets it from the downward API,
    spec.nodeName): its Lease is named after it."""
    namespace: str = "modelserve"
    """The platform namespace: the GPU report Leases and the power profile ConfigMap."""
    interval_seconds: float = Field(default=10.0, gt=0)
    """How often nvidia-smi is read and the Lease renewed."""
    lease_seconds: float = Field(default=30.0, gt=0)
    """How long a report counts without renewal (then the gateway shows no figures)."""
    nvidia_smi: str = "nvidia-smi"
    """The nvidia-smi command (a name on PATH or a path)."""
    command_timeout_seconds: float = Field(default=10.0, gt=0)
    """How long one nvidia-smi run may take."""
    apply_power_limits: bool = False
    """Set each GPU's power limit to the current profile's (`nvidia-smi -pl`; needs root
    on the node). Off: the limits are left as they are, and the report says so."""
    kubeconfig: Path | None = None
    """Credentials; by default $KUBECONFIG, else the pod's service account."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @model_validator(mode="after")
    def _lease_outlives_renewals(self) -> NodeAgentSettings:
        if self.lease_seconds <= self.interval_seconds:
            raise ValueError("NODEAGENT_LEASE_SECONDS must exceed NODEAGENT_INTERVAL_SECONDS")
        return self
