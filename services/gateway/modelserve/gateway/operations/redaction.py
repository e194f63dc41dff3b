"""Settings as GET /config shows them: every value, with what could grant access replaced
by "***" (pure).

Redacted: every SecretStr (keys, passwords, tokens, the database URL), except that a
secret URL keeps its scheme, user, host, port and path and loses its password and every
query value (which may carry one); any other text whose field name says it is a password,
secret or token; the user, password and query values of any other URL (a user alone may
be a token: `https://<token>@host`), and the whole of a text that looks like a URL with
credentials but cannot be read as one. Paths (to a key file, say) are shown: a path grants
nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, SecretBytes, SecretStr

REDACTED = "***"
_SECRET_NAME = re.compile(r"password|secret|token(?!s$)|credential|private", re.IGNORECASE)


def redact_url(url: str, *, query: bool, user: bool = False) -> str | None:
    """`url` without its password (with `query`, without its query values; with `user`,
    without its user either); None if it is no URL with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username is not None:
        name = REDACTED if user else parts.username
        netloc = f"{name}{f':{REDACTED}' if parts.password is not None else ''}@{netloc}"
    kept = parts.query
    if query and kept:
        kept = urlencode(
            [(k, REDACTED) for k, _ in parse_qsl(kept, keep_blank_values=True)], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, kept, ""))


def _value(name: str, value: Any, path: str, redacted: list[str]) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        redacted.append(path)
        text = value.get_secret_value()
        shown = redact_url(text, query=True) if isinstance(text, str) else None
        return shown if shown is not None else REDACTED
    if isinstance(value, BaseModel):
        return redact_model(value, path=f"{path}.", redacted=redacted)
    if isinstance(value, str):
        if _SECRET_NAME.search(name):
            redacted.append(path)
            return REDACTED
        shown = redact_url(value, query=True, user=True)
        if shown is None and "://" in value and "@" in value.split("://", 1)[1].split("/")[0]:
            shown = REDACTED  # credentials, perhaps, in a URL that cannot be read
        if shown is not None and shown != value:
            redacted.append(path)
            return shown
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_value(name, item, f"{path}[{i}]", redacted) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _value(str(k), v, f"{path}.{k}", redacted) for k, v in value.items()}
    return value


def redact_model(
    model: BaseModel, *, path: str = "", redacted: list[str] | None = None
) -> dict[str, Any]:
    """Every field of `model` (nested models as dicts), redacted; the dotted names of what
    was redacted are appended to `redacted`."""
    found = redacted if redacted is not None else []
    return {
        name: _value(name, getattr(model, name), f"{path}{name}", found)
        for name in type(model).model_fields
    }


def redacted_settings(model: BaseModel) -> tuple[dict[str, Any], list[str]]:
    """(the settings as a dict, the dotted names of the redacted fields)."""
    redacted: list[str] = []
    return redact_model(model, redacted=redacted), redacted
