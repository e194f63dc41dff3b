"""`modelserve-download`: run the download service."""

from __future__ import annotations

from modelserve.common.service import serve
from modelserve.download.app import create_app
from modelserve.download.settings import DownloadSettings


def main() -> None:
    settings = DownloadSettings()
    serve(create_app(settings), settings)
