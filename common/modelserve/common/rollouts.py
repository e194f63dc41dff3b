"""Set-active rollouts as a ModelServe records them: the operator writes them, the gateway
reads them (pure data, no I/O).

Whoever changes `spec.model.uri` to a registered version (the gateway's
`POST /models/set_active`) annotates the ModelServe with the version's registry id and
the registry's history entry of the change:

    llm.modelserve.io/model-version: qwen3-step-5000
    llm.modelserve.io/rollout-id: "42"

The operator keeps two status fields: `model`, what every replica ran when the server
was last fully Ready (the version a failed rollout goes back to), and `rollout`, the
latest change of the model from `model` to `spec.model.uri`, with its phase.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from modelserve.common.modelserve import GROUP

MODEL_VERSION_ANNOTATION = f"{GROUP}/model-version"
ROLLOUT_ANNOTATION = f"{GROUP}/rollout-id"


class Phase(enum.StrEnum):
    PROGRESSING = "Progressing"  # replicas are being replaced by the new model's
    COMPLETE = "Complete"  # every replica runs the new model and is Ready
    ROLLED_BACK = "RolledBack"  # the new model did not become Ready: the servers run `from`
    SUPERSEDED = "Superseded"  # spec.model.uri went back to `from` before the end


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """A model as a server runs it: where its weights are, and its registry id if known."""

    uri: str
    version: str | None = None

    @classmethod
    def from_status(cls, value: Any) -> ModelVersion | None:
        if not isinstance(value, Mapping) or not isinstance(value.get("uri"), str):
            return None
        version = value.get("version")
        return cls(value["uri"], version if isinstance(version, str) and version else None)

    def to_status(self) -> dict[str, Any]:
        return {"uri": self.uri, "version": self.version}

    def __str__(self) -> str:
        return self.version or self.uri


@dataclasses.dataclass(frozen=True)
class Rollout:
    """status.rollout: one change of a server's model."""

    id: str  # the rollout-id annotation ("" when the change came without one)
    source: ModelVersion  # `from` on the wire
    target: ModelVersion  # `to` on the wire
    phase: Phase
    started_at: str  # RFC 3339
    finished_at: str | None = None
    reason: str = ""  # why it was rolled back: FetchFailed, ServerFailed, DeadlineExceeded
    message: str = ""

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Rollout | None:
        value = status.get("rollout")
        if not isinstance(value, Mapping):
            return None
        source = ModelVersion.from_status(value.get("from"))
        target = ModelVersion.from_status(value.get("to"))
        try:
            phase = Phase(str(value.get("phase")))
        except ValueError:
            return None
        if source is None or target is None:
            return None
        finished = value.get("finishedAt")
        return cls(
            id=str(value.get("id") or ""),
            source=source,
            target=target,
            phase=phase,
            started_at=str(value.get("startedAt") or ""),
            finished_at=finished if isinstance(finished, str) else None,
            reason=str(value.get("reason") or ""),
            message=str(value.get("message") or ""),
        )

    def to_status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.source.to_status(),
            "to": self.target.to_status(),
            "phase": self.phase.value,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "reason": self.reason,
            "message": self.message,
        }


def running_model(status: Mapping[str, Any]) -> ModelVersion | None:
    """status.model: what the server last ran on every replica, Ready."""
    return ModelVersion.from_status(status.get("model"))
