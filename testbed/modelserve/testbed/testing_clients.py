"""How tests talk to ModelServe's services: HTTP clients that send a person's token, and
what a service's /metrics says."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from modelserve.common.tokens import TokenSigner


@contextlib.contextmanager
def token_clients(signer: TokenSigner) -> Iterator[Callable[..., httpx.Client]]:
    """`make(url, subject, roles=(), teams=())`: an HTTP client of `url` that sends a token
    `signer` made for that person; every client made is closed on the way out."""
    made: list[httpx.Client] = []

    def make(
        url: str, subject: str, roles: Iterable[str] = (), teams: Iterable[str] = ()
    ) -> httpx.Client:
        token = signer.sign(subject, roles=roles, teams=teams)
        made.append(
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        )
        return made[-1]

    try:
        yield make
    finally:
        for client in made:
            client.close()


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` on `url`/metrics that carry all `labels` (0 when
    there are none)."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        sample, _, value = line.rpartition(" ")
        if all(f'{key}="{wanted}"' in sample for key, wanted in labels.items()):
            total += float(value)
    return total


def error_of(answer: httpx.Response) -> dict[str, Any]:
    """The `error` of an OpenAI-shaped error answer, checked to have exactly its fields."""
    body = answer.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, Any] = body["error"]
    return error
