"""The web UI (web/, docs/ui.md): its build served as static files under /ui, so that
production needs no server of its own. Where GATEWAY_UI_DIR names no build, /ui says so
in a JSON error rather than a blank page."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from modelserve.common.errors import ApiError

PREFIX = "/ui"
# The UI loads its own scripts and styles only, talks only to this gateway, and is never
# framed (clickjacking).
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class UiFiles(StaticFiles):
    """The build's files, with the UI's security headers; index.html is never cached
    (a new build takes effect at once), the hashed assets are, for a year."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        if path.startswith("assets/"):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            response.headers["Cache-Control"] = "no-cache"
        return response


def install_ui(app: FastAPI, folder: Path | None) -> None:
    """Serve the build in `folder` (web/dist) under /ui; without one, /ui answers 404."""

    @app.get(PREFIX, include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/")

    if folder is not None and (folder / "index.html").is_file():
        app.mount(PREFIX, UiFiles(directory=folder, html=True), name="ui")
        return

    @app.get(PREFIX + "/{rest:path}", include_in_schema=False)
    async def ui_missing(rest: str) -> Response:
        raise ApiError(
            404,
            "ui_not_installed",
            "this gateway serves no web UI: build it (make ui) and set GATEWAY_UI_DIR to "
            "its folder (web/dist)",
        )
