"""The whole path of arena tests (tests/arena/conftest.py's `arena_platform`)."""

from __future__ import annotations

import dataclasses

import httpx

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.gateway_accounts import GatewayUsers, bearer_client
from modelserve.testbed.platform import RunningService


@dataclasses.dataclass
class ArenaPlatform(GatewayUsers):
    """The gateway and the contract service as processes on the real control plane and
    PostgreSQL, with the operator; SmolLM2 served under two names in a platform
    namespace (two llama.cpp servers; the second with best-of-2 scaling by default), so
    every user may battle the two. Users are real accounts of the gateway (`user()`)."""

    gateway: RunningService
    contract: RunningService
    signer: TokenSigner
    models: tuple[str, str]  # the platform's two served names
    namespace: str  # the platform namespace
    users_namespace: str  # where users' own servers go
    _users: dict[str, str] = dataclasses.field(default_factory=dict)

    def contracts(self) -> httpx.Client:
        """The contract service's API as the platform's admin."""
        return bearer_client(self.contract.url, self.signer.sign("root", roles=["admin"]))
