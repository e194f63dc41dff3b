"""What `modelserve login` keeps: the gateway's URL and a token for it, in
`$XDG_CONFIG_HOME/modelserve/config.json` (else `~/.config/modelserve/config.json`),
readable by its owner alone.

The file is written as ssh writes its keys: a folder of mode 0700, a new file of mode 0600
put in place with one rename, and a token is never written to, nor read from, a file that
others may read. The saved token goes only to the gateway it came from: a command aimed
at another URL runs without it."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelserve.client.errors import ModelServeError
from modelserve.client.settings import DEFAULT_URL, TOKEN_VARIABLE, URL_VARIABLES

CONFIG_NAME = Path("modelserve") / "config.json"
PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
OTHERS = stat.S_IRWXG | stat.S_IRWXO


@dataclass(frozen=True)
class SavedLogin:
    url: str
    token: str
    username: str | None = None
    expires_at: dt.datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "token": self.token,
            "username": self.username,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    @classmethod
    def from_json(cls, body: Any, path: Path) -> SavedLogin:
        if not isinstance(body, dict) or not all(
            isinstance(body.get(key), str) for key in ("url", "token")
        ):
            raise ModelServeError("bad_config", f"{path}: no url and token in it")
        expires = body.get("expires_at")
        return cls(
            url=body["url"],
            token=body["token"],
            username=body.get("username"),
            expires_at=dt.datetime.fromisoformat(expires) if isinstance(expires, str) else None,
        )

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def config_path(env: Mapping[str, str]) -> Path:
    """Where the saved login lives: XDG's config folder (an absolute $XDG_CONFIG_HOME),
    else ~/.config."""
    folder = env.get("XDG_CONFIG_HOME", "")
    base = Path(folder) if folder and Path(folder).is_absolute() else Path.home() / ".config"
    return base / CONFIG_NAME


def refuse_shared(path: Path, mode: int) -> None:
    if mode & OTHERS:
        raise ModelServeError(
            "config_not_private",
            f"{path} has mode {stat.S_IMODE(mode):o}: others could read the token in it; "
            f"chmod 600 {path} (or modelserve logout, then login again)",
        )


def load(path: Path) -> SavedLogin | None:
    """The saved login, or None when there is none. Raises `config_not_private` for a file
    that others may read, as ssh refuses such a key."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ModelServeError("bad_config", f"{path}: {error.strerror}") from error
    with os.fdopen(descriptor, "rb") as opened:
        refuse_shared(path, os.fstat(opened.fileno()).st_mode)
        content = opened.read()
    try:
        body = json.loads(content)
    except ValueError as error:
        raise ModelServeError("bad_config", f"{path}: not JSON: {error}") from error
    return SavedLogin.from_json(body, path)


def save(path: Path, login: SavedLogin) -> None:
    """Write `login` to `path` with mode 0600 (its folder made 0700 when new), through a
    new file renamed into place; refuses when the file would be readable by others (a
    file system that ignores modes)."""
    path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    fresh = path.with_name(f".{path.name}.{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(fresh, flags, PRIVATE_FILE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as opened:
            # The mode given to open() is narrowed by the umask only; set it outright.
            os.fchmod(opened.fileno(), PRIVATE_FILE)
            refuse_shared(path, os.fstat(opened.fileno()).st_mode)
            json.dump(login.as_json(), opened, indent=2)
            opened.write("\n")
        fresh.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()
        raise


def remove(path: Path) -> bool:
    """Delete the saved login; whether there was one."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Where:
    """The gateway a command talks to, and the token it sends (None: none)."""

    url: str
    token: str | None


def where(
    url: str | None,
    token: str | None,
    env: Mapping[str, str],
    saved: SavedLogin | None,
    now: dt.datetime,
) -> Where:
    """--url, else $MODELSERVE_URL / $GATEWAY_URL, else the saved login's URL, else the
    local default; --token, else $MODELSERVE_TOKEN, else the saved token when the URL is
    the one it was saved for. A saved token that expired raises `login_expired`."""
    chosen = (
        url
        or next((env[key] for key in URL_VARIABLES if env.get(key)), None)
        or (saved.url if saved else None)
        or DEFAULT_URL
    ).rstrip("/")
    given = token or env.get(TOKEN_VARIABLE) or None
    if given is not None or saved is None or saved.url != chosen:
        return Where(chosen, given)
    if saved.expired(now):
        assert saved.expires_at is not None
        raise ModelServeError(
            "login_expired",
            f"the token modelserve login saved for {saved.url} expired at "
            f"{saved.expires_at.isoformat()}: run modelserve login again",
        )
    return Where(chosen, saved.token)
