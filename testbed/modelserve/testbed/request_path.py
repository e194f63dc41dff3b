"""A request's path through the platform, as the tests of request ids and shutdown use it
(`tests/common/conftest.py` builds it): a model server that records what it is sent, the
contract service, and gateways routing to the server."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx

from modelserve.common.tokens import TokenSigner
from modelserve.testbed.platform import RunningService
from modelserve.testbed.polling import wait_for
from modelserve.testbed.recording_upstream import RecordingUpstream


@dataclasses.dataclass(frozen=True)
class RequestPath:
    upstream: RecordingUpstream
    served_name: str
    contract: RunningService
    signer: TokenSigner
    start_gateway: Callable[..., RunningService]
    """`start_gateway(**settings)`: a gateway on the path, stopped after the module."""

    def user_headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.signer.sign('someone')}", **extra}


def wait_routed(path: RequestPath, gateway: RunningService) -> None:
    """Until `gateway` lists the recorded model (its discovery has the server)."""

    def listed() -> bool:
        answer = httpx.get(f"{gateway.url}/v1/models", headers=path.user_headers(), timeout=10)
        return answer.status_code == 200 and path.served_name in {
            model["id"] for model in answer.json()["data"]
        }

    wait_for(listed, timeout=60, what=f"the gateway to route {path.served_name}")


def chat_body(path: RequestPath, *, stream: bool, tokens: int = 20) -> dict[str, object]:
    """A chat completion of the recorded model; its answer is `tokens` chunks long."""
    return {
        "model": path.served_name,
        "messages": [{"role": "user", "content": "say something"}],
        "max_tokens": tokens,
        "stream": stream,
    }
