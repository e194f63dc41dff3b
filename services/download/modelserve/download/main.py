"""`modelserve-download`: the service, or with a command its client (see `cli`)."""

from __future__ import annotations

import sys

from modelserve.common.service import serve
from modelserve.download import cli
from modelserve.download.app import create_app
from modelserve.download.settings import DownloadSettings


def serve_download() -> None:
    settings = DownloadSettings()
    serve(create_app(settings), settings)


def main() -> None:
    args = cli.parser().parse_args()
    if args.command in (None, "serve"):
        serve_download()
        return
    sys.exit(cli.run_command(args))
