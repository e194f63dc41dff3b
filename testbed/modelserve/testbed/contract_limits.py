"""Writing a user's or a team's contract straight to the contract service, as an admin."""

from __future__ import annotations

from typing import Any

import httpx

from modelserve.common.tokens import TokenSigner


def put_contract(url: str, signer: TokenSigner, kind: str, name: str, **limits: Any) -> None:
    """PUT /contracts/{kind}/{name} (`kind`: user or team) with `limits`; it must answer 200."""
    answer = httpx.put(
        f"{url}/contracts/{kind}/{name}",
        json=limits,
        headers={"Authorization": f"Bearer {signer.sign('root', roles=['admin'])}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
