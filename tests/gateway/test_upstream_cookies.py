"""The gateway's one pool of connections to model servers carries every user's requests:
a cookie one answer sets must never ride along on a later request (another user's) to
the same server. A real HTTP server on loopback and the gateway's real client, by a host
name (`localhost`): aiohttp's usual jar keeps no cookie of a bare IP address (a pod's), but
an external server has a name."""

from __future__ import annotations

import asyncio

from aiohttp import web

from modelserve.gateway.upstream import UpstreamClient


async def _exchange_twice() -> list[str | None]:
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("session", "alice-session", path="/")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = UpstreamClient(connections=4, connect_timeout=5, read_timeout=5)
    try:
        for _ in range(2):
            status, _ = await client.post(
                f"http://localhost:{port}/v1/chat/completions",
                b"{}",
                {"Content-Type": "application/json"},
            )
            assert status == 200
    finally:
        await client.close()
        await runner.cleanup()
    return seen


def test_a_cookie_a_model_server_sets_is_never_sent_back() -> None:
    assert asyncio.run(_exchange_twice()) == [None, None]
