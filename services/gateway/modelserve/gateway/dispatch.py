"""Sending a request to a server: to the endpoint the balancing policy chose, and to
another one when the connection fails before any answer.

The proxy and the scaled path both send through a `Dispatcher`, so every upstream call
is counted in flight on its endpoint, from the choice until its answer is done with.

Retry: when the connection to an endpoint is refused, reset or closed before the head of
an answer (`NoAnswer`), nothing of an answer has reached the client, and the request goes
to another ready endpoint of the same server, each endpoint at most once. Timeouts are
not retried (the server may be generating: a second one would double the work), nor is
anything after the head of an answer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from modelserve.gateway.balancing import Endpoint
from modelserve.gateway.loading.book import LoadBook
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.openai_errors import OpenAIError
from modelserve.gateway.routing import RETRY_AFTER_SECONDS, RouteTable, Target
from modelserve.gateway.upstream import NoAnswer, UpstreamClient, UpstreamResponse

logger = logging.getLogger(__name__)


class NoReadyEndpoint(OpenAIError):
    """The server is Ready, but none of its endpoints takes requests right now (its pods
    are starting or going away, or it is being put to sleep): 503 with Retry-After, as
    for a server not ready."""

    def __init__(self, target: Target, why: str = "has no ready endpoint") -> None:
        super().__init__(
            503,
            f"the model {target.served_name!r} is not ready yet ({target.namespace}/"
            f"{target.name} {why}); retry in {RETRY_AFTER_SECONDS} s",
            code="model_not_ready",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            model=target.served_name,
        )


class Dispatcher:
    """Chooses an endpoint per call, counts it in flight (on its endpoint, and on its
    server in `book`: what this replica reports to the operator), and retries refused
    connections."""

    def __init__(
        self,
        table: RouteTable,
        upstream: UpstreamClient,
        metrics: GatewayMetrics,
        book: LoadBook | None = None,
    ) -> None:
        self._table = table
        self._upstream = upstream
        self._metrics = metrics
        self.book = book if book is not None else LoadBook()

    @contextlib.asynccontextmanager
    async def exchange(
        self,
        target: Target,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        from_root: bool = False,
        running: bool = False,
    ) -> AsyncIterator[UpstreamResponse]:
        """POST `body` to `path` of an endpoint of `target`, and hold the answer's head
        while the caller reads it: the endpoint counts the request in flight until then.

        `path` is under the endpoint's OpenAI base URL ("/chat/completions"), or from the
        server's root with `from_root` ("/v1/chat/completions", "/pooling"). Raises
        NoReadyEndpoint, or the UpstreamError of the last endpoint tried.

        A server the operator is taking away (`Target.fenced`, by the table's current
        version) gets no new request: the callers hold those first, this is the last
        line. `running`: a call of a request already counted running on the server (a
        scaled request's later calls) goes on through a drain, which that count keeps
        from completing; never to a server asleep."""
        current = self._table.current(target)
        if current.asleep or (current.draining and not running):
            raise NoReadyEndpoint(target, "is being put to sleep")
        self.book.started(target.server_id)
        try:
            endpoint, answer = await self._connect(target, path, body, headers, from_root)
            try:
                yield answer
            finally:
                self._table.endpoints.release(endpoint)
        finally:
            self.book.finished(target.server_id)

    async def post(
        self,
        target: Target,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        running: bool = False,
    ) -> tuple[int, bytes]:
        """A whole exchange with a path from the server's root: status and body."""
        exchange = self.exchange(target, path, body, headers, from_root=True, running=running)
        async with exchange as answer:
            try:
                return answer.status, await answer.read()
            finally:
                answer.release()

    async def _connect(
        self,
        target: Target,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        from_root: bool,
    ) -> tuple[Endpoint, UpstreamResponse]:
        """The head of an answer, and the endpoint that gave it (counted in flight)."""
        endpoint = self._table.choose(target)
        if endpoint is None:
            raise NoReadyEndpoint(target)
        tried: list[str] = []
        reconnected = False
        while True:
            # Counted from the choice on: the next choice sees this request.
            self._table.endpoints.acquire(endpoint)
            base = endpoint.url.removesuffix("/v1") if from_root else endpoint.url
            try:
                return endpoint, await self._upstream.send(base + path, body, headers)
            except NoAnswer as error:
                self._table.endpoints.release(endpoint)
                if error.closed and not reconnected:
                    # A kept-alive connection the server had closed: once per request,
                    # the same endpoint again (the pool has dropped that connection).
                    reconnected = True
                    self._retried(target, endpoint, endpoint, error)
                    continue
                tried.append(endpoint.url)
                following = self._table.choose(target, exclude=tried)
                if following is None:
                    raise
                self._retried(target, endpoint, following, error)
                endpoint = following
            except BaseException:
                self._table.endpoints.release(endpoint)
                raise

    def _retried(
        self, target: Target, failed: Endpoint, following: Endpoint, error: NoAnswer
    ) -> None:
        self._metrics.upstream_retries.labels(target.served_name).inc()
        logger.warning(
            "model server %s/%s: %s gave no answer (%s); the request goes to %s",
            target.namespace,
            target.name,
            failed.pod or failed.url,
            error.detail,
            following.pod or following.url,
        )
