"""`modelserve-gateway`: run the gateway service."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from modelserve.common.service import serve
from modelserve.gateway.app import create_app
from modelserve.gateway.settings import GatewaySettings


def main() -> None:
    try:
        settings = GatewaySettings()
    except ValidationError as error:
        # A configuration mistake (a development or short JWT_SECRET, say): its message,
        # not a traceback.
        problems = "\n".join(
            f"  {'.'.join(map(str, problem['loc'])) or error.title}: {problem['msg']}"
            for problem in error.errors()
        )
        sys.exit(f"modelserve-gateway: invalid settings:\n{problems}")
    serve(create_app(settings), settings)
