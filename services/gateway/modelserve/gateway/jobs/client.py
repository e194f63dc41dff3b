"""The gateway's one client of the jobs service: requests are passed on as they came,
with the caller's own Authorization header (the jobs service judges what that caller may
see and do), bodies streamed both ways (an input file of hundreds of MB is never held in
memory). Without a jobs service (GATEWAY_JOBS_URL unset) these routes answer 404
`jobs_not_configured`; one that cannot be reached is 503 `jobs_unavailable`."""

from __future__ import annotations

from urllib.parse import quote

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from modelserve.common.errors import ApiError

# What a path keeps unencoded (RFC 3986's pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
# Headers of the caller's request that the jobs service reads. Not X-Request-ID: the
# request's id (the caller's if it was safe) goes with every call of this client, and the
# gateway answers it itself.
_REQUEST_HEADERS = ("authorization", "content-type", "accept", "openai-beta")
# Headers of its answer that the caller reads (the raw body is passed on, so its length
# holds: a client downloading a file sees how large it is).
_ANSWER_HEADERS = (
    "content-type",
    "content-length",
    "content-disposition",
    "x-total-count",
    "retry-after",
    "www-authenticate",
)


class JobsClient:
    """`http` is its own client (not the one the gateway asks its peers with): uploads
    and downloads hold a connection as long as they last, and at most its pool's size of
    them run at once; past that a request waits a few seconds, then is 503."""

    def __init__(self, base_url: str | None, http: httpx.AsyncClient, timeout: float) -> None:
        self._base = base_url.rstrip("/") if base_url else None
        self._http = http
        # Uploads and downloads of files take as long as their size needs; a read that
        # stalls this long ends the request.
        self._timeout = httpx.Timeout(timeout, connect=10.0, pool=5.0)

    @property
    def configured(self) -> bool:
        return self._base is not None

    async def forward(self, request: Request) -> StreamingResponse:
        """`request` passed on to the same path of the jobs service; its answer streamed
        back, status and the headers above kept."""
        if self._base is None:
            raise ApiError(404, "jobs_not_configured", "this gateway has no jobs service")
        headers = {
            name: value
            for name in _REQUEST_HEADERS
            if (value := request.headers.get(name)) is not None
        }
        path = request.url.path
        if any(segment in (".", "..") for segment in path.split("/")):
            # `%2E%2E` arrives decoded: passed on, it would climb out of these routes.
            raise ApiError(404, "not_found", f"no route {path[:200]!r}")
        has_body = request.method in ("POST", "PUT", "PATCH")
        upstream = self._http.build_request(
            request.method,
            # Encoded again as it came: a `%3F` in an id stays part of the path.
            self._base + quote(path, safe=_PATH_SAFE),
            params=str(request.query_params),
            headers=headers,
            content=request.stream() if has_body else None,
            timeout=self._timeout,
        )
        try:
            answer = await self._http.send(upstream, stream=True)
        except httpx.HTTPError as error:
            raise ApiError(
                503, "jobs_unavailable", f"the jobs service cannot be reached: {error}"
            ) from error
        kept = {
            name: value
            for name in _ANSWER_HEADERS
            if (value := answer.headers.get(name)) is not None
        }
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers=kept,
            background=BackgroundTask(answer.aclose),
        )
