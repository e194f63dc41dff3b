"""The one error the client raises: what the platform said (its `error.code`, `message`
and the HTTP status), or why it could not be asked."""

from __future__ import annotations

import json
from typing import Any


class ModelServeError(Exception):
    """A refusal or failure. `status` is the HTTP status (None when no answer came:
    `code` is then `unreachable`, `timeout` or the registration's own error)."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(f"{status or '-'} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "details": self.details,
        }


def error_of(status: int, content: bytes) -> ModelServeError:
    """The error of an answer with `status` >= 400: the platform's shape
    `{"error": {"code", "message", "details"}}`, OpenAI's under /v1
    (`{"error": {"message", "type", "param", "code"}}`), or the text of anything else."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = error.get("code") or error.get("type") or f"http_{status}"
        details = error.get("details") if "details" in error else error.get("param")
        return ModelServeError(str(code), error["message"], status, details)
    text = content.decode("utf-8", "replace").strip()[:300]
    return ModelServeError(f"http_{status}", text or f"HTTP {status}", status)
