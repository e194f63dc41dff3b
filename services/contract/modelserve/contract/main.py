"""`modelserve-contract`: run the contract service."""

from __future__ import annotations

from modelserve.common.service import serve
from modelserve.contract.app import create_app
from modelserve.contract.settings import ContractSettings


def main() -> None:
    settings = ContractSettings()
    serve(create_app(settings), settings)
