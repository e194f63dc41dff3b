"""`modelserve-jobs`: the jobs service (its API and its worker)."""

from __future__ import annotations

from modelserve.common.service import serve
from modelserve.jobs.app import create_app
from modelserve.jobs.settings import JobsSettings


def main() -> None:
    settings = JobsSettings()
    serve(create_app(settings), settings)
