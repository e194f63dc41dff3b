"""Real accounts of a running gateway, for tests of the whole path: users made by its
admin API (and their team), signed in with their password like anyone."""

from __future__ import annotations

import httpx

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService


def bearer_client(gateway_url: str, token: str, timeout: float = 300) -> httpx.Client:
    """A client of the gateway that sends `token`."""
    return httpx.Client(
        base_url=gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )


def admin_client(gateway_url: str, signer: TokenSigner) -> httpx.Client:
    """A client of the gateway as the platform's admin (a token of the gateway's signer)."""
    return bearer_client(gateway_url, signer.sign("root", roles=["admin"]))


def sign_up(gateway_url: str, signer: TokenSigner, name: str, team: str | None) -> str:
    """A new account `name` (a member of `team`, made if missing), signed in: its token."""
    password = f"{name}-password-for-tests"
    with admin_client(gateway_url, signer) as admin:
        if team is not None:
            made = admin.post("/teams", json={"name": team})
            assert made.status_code in (201, 409), made.text
        made = admin.post(
            "/users",
            json={"username": name, "password": password, "teams": [team] if team else []},
        )
        assert made.status_code == 201, made.text
    signed = httpx.post(
        f"{gateway_url}/auth/token", json={"username": name, "password": password}, timeout=30
    )
    assert signed.status_code == 200, signed.text
    token: str = signed.json()["access_token"]
    return token


class GatewayUsers:
    """`admin()` and `user()` clients of a platform of tests (a dataclass with these
    attributes: the running gateway, its token signer, the tokens made so far)."""

    gateway: RunningService
    signer: TokenSigner
    _users: dict[str, str]

    def admin(self) -> httpx.Client:
        return admin_client(self.gateway.url, self.signer)

    def user(self, name: str, team: str | None = None) -> httpx.Client:
        """A client of the gateway as `name` (made an account, and member of `team`, the
        first time), with a token from signing in."""
        if name not in self._users:
            self._users[name] = sign_up(self.gateway.url, self.signer, name, team)
        return bearer_client(self.gateway.url, self._users[name])
