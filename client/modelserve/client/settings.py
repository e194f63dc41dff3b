"""Where the gateway is and who calls it: from the arguments, else the environment
(MODELSERVE_URL or GATEWAY_URL, MODELSERVE_TOKEN), else the local default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_URL = "http://127.0.0.1:8200"
DEFAULT_TIMEOUT = 60.0
URL_VARIABLES = ("MODELSERVE_URL", "GATEWAY_URL")
TOKEN_VARIABLE = "MODELSERVE_TOKEN"


@dataclass(frozen=True)
class ClientSettings:
    base_url: str
    token: str | None
    timeout: float

    @classmethod
    def resolve(
        cls,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ClientSettings:
        found = os.environ if env is None else env
        url = base_url or next((found[k] for k in URL_VARIABLES if found.get(k)), DEFAULT_URL)
        return cls(
            base_url=url.rstrip("/"),
            token=token or found.get(TOKEN_VARIABLE) or None,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        )

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def headers(self) -> dict[str, str]:
        """The API's headers: the bearer token (a JWT or an API key), when there is one."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}
