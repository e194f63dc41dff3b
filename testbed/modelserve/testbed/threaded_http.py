"""A test's fake HTTP server: an aiohttp application on 127.0.0.1, served from an event
loop in a thread of its own, so that synchronous tests can start, call and stop it."""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web

from modelserve.testbed.processes import free_port


class ThreadedApp:
    """Subclasses say what is served (`application`); `url` is its OpenAI base URL."""

    # A client that goes away cancels its handler, as in a real model server.
    handler_cancellation = True

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def application(self) -> web.Application:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        self._runner = web.AppRunner(
            self.application(), handler_cancellation=self.handler_cancellation, shutdown_timeout=1
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
