"""`modelserve-download`: the service, or with a command its client (see `cli`)."""

from __future__ import annotations

import logging
import sys

from modelserve.common.service import serve
from modelserve.download import cli
from modelserve.download.app import create_app
from modelserve.download.settings import DownloadSettings


def serve_download() -> None:
    settings = DownloadSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(create_app(settings), settings)


def main() -> None:
    args = cli.parser().parse_args()
    if args.command in (None, "serve"):
        serve_download()
        return
    sys.exit(cli.run_command(args))
