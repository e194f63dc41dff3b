"""Forward auth for Traefik (/auth/verify?server=<id>) against the real control plane: the
gateway learns servers by watching ModelServes, and lets through only those who may use
the server (tenant isolation on the operator's direct routes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from modelserve.common.modelserve import OWNER_LABEL, TEAM_LABEL
from modelserve.common.tokens import TokenSigner
from modelserve.testbed.kube import KubeCluster
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for

pytestmark = [pytest.mark.kube, pytest.mark.postgres]


def create_server(kube: KubeCluster, namespace: str, name: str, labels: dict[str, str]) -> str:
    """An external ModelServe (no operator needed: verify does not ask for readiness); its uid."""
    body = {
        "apiVersion": "llm.modelserve.io/v1alpha1",
        "kind": "ModelServe",
        "metadata": {"name": name, "labels": labels},
        "spec": {"runtime": "external", "external": {"url": "http://127.0.0.1:9/v1"}},
    }
    kube.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))
    uid: str = kube.get_json("-n", namespace, "ms", name)["metadata"]["uid"]
    return uid


def verify(gateway: RunningService, server: str, token: str | None, method: str = "GET") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # What Traefik adds to the client's own headers.
    headers |= {"X-Forwarded-Method": "POST", "X-Forwarded-Uri": f"/{server}/v1/completions"}
    return httpx.request(
        method, f"{gateway.url}/auth/verify", params={"server": server}, headers=headers
    )


def test_only_who_may_use_a_server_gets_through(
    crds: KubeCluster,
    gateway_kube: str,
    namespace: str,
    signer: TokenSigner,
    start_gateway: Callable[..., RunningService],
) -> None:
    owned = create_server(crds, namespace, "owned", {OWNER_LABEL: "alice", TEAM_LABEL: "nlp"})
    unowned = create_server(crds, namespace, "unowned", {})
    gateway = start_gateway(GATEWAY_KUBECONFIG=gateway_kube)
    alice = signer.sign("alice", teams=["nlp"])
    carol = signer.sign("carol", teams=["vision", "nlp"])
    bob = signer.sign("bob", teams=["vision"])
    root = signer.sign("root", roles=["admin"])
    service = signer.service_token("bench")
    wait_for(
        lambda: verify(gateway, unowned, root).status_code == 200,
        timeout=30,
        what="the gateway to learn the servers",
    )

    for token, user, team in (
        (alice, "alice", "nlp"),
        (carol, "carol", "nlp"),  # the server's team, not her first
        (root, "root", ""),
        (service, "service:bench", ""),
    ):
        answer = verify(gateway, owned, token)
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-ModelServe-User"] == user
        assert answer.headers["X-ModelServe-Team"] == team

    refused = verify(gateway, owned, bob)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert "X-ModelServe-User" not in refused.headers
    # A server nobody owns (made without the gateway) is for admins and services only.
    assert verify(gateway, unowned, alice).status_code == 403
    assert verify(gateway, unowned, service).status_code == 200

    missing: list[tuple[str | None, str]] = [(None, "token_missing"), ("forged", "token_invalid")]
    for bad, code in missing:
        unauthenticated = verify(gateway, owned, bad)
        assert unauthenticated.status_code == 401
        assert unauthenticated.json()["error"]["code"] == code
        assert unauthenticated.headers["WWW-Authenticate"] == "Bearer"

    unknown = verify(gateway, "00000000-0000-0000-0000-000000000000", alice)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "server_not_found"
    assert verify(gateway, "", alice).status_code == 400
    # Traefik may keep the client's method (preserveRequestMethod).
    for method in ("POST", "HEAD", "DELETE"):
        assert verify(gateway, owned, alice, method).status_code == 200


def test_a_deleted_server_lets_nobody_through(
    crds: KubeCluster,
    gateway_kube: str,
    namespace: str,
    signer: TokenSigner,
    start_gateway: Callable[..., RunningService],
) -> None:
    gateway = start_gateway(GATEWAY_KUBECONFIG=gateway_kube)
    alice = signer.sign("alice")
    # Made after the gateway started: the watch brings it, then its deletion.
    server = create_server(crds, namespace, "brief", {OWNER_LABEL: "alice"})
    wait_for(
        lambda: verify(gateway, server, alice).status_code == 200,
        timeout=30,
        what="the gateway to learn the new server",
    )
    crds.kubectl("delete", "-n", namespace, "ms", "brief", "--wait=true")
    wait_for(
        lambda: verify(gateway, server, alice).status_code == 404,
        timeout=30,
        what="the gateway to forget the deleted server",
    )
