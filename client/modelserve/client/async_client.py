"""`AsyncClient`: the gateway's calls over an asyncio httpx client (calls.py builds and reads
them; this module only sends them)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx

from modelserve.client import calls
from modelserve.client.answers import (
    Activation,
    ActiveModel,
    ApiKey,
    ApiKeyCreated,
    ChatChunk,
    ChatCompletion,
    GpuStats,
    Health,
    HistoryEntry,
    Info,
    Logs,
    Me,
    ModelRecord,
    PowerProfile,
    Registration,
    Server,
    SystemStats,
    Token,
    Upload,
    Version,
)
from modelserve.client.arena import calls as arena_calls
from modelserve.client.arena.answers import (
    ArenaBattle,
    ArenaBattles,
    ArenaTurn,
    ArenaVote,
    ArenaVotes,
    BattleEvent,
    Leaderboard,
)
from modelserve.client.arena.events import EventReader, unfinished
from modelserve.client.chunks import ChunkReader
from modelserve.client.chunks import unfinished as chat_unfinished
from modelserve.client.errors import ModelServeError, error_of
from modelserve.client.jobs import calls as job_calls
from modelserve.client.jobs.answers import (
    DataGenJob,
    EvalExamples,
    EvalJob,
    Generation,
    Job,
    JobStats,
    TypedJob,
)
from modelserve.client.jobs.waiting import timed_out as job_timed_out
from modelserve.client.settings import ClientSettings
from modelserve.client.uploads import Counter, Progress, aread_piece, etag_of, pieces
from modelserve.client.waiting import settled, timed_out

T = TypeVar("T")
J = TypeVar("J", bound=TypedJob)


class AsyncClient:
    """ModelServe's gateway, for asyncio programs: `AsyncClient()` reads MODELSERVE_URL (or
    GATEWAY_URL) and MODELSERVE_TOKEN; `AsyncClient(url, token)` names them."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = ClientSettings.resolve(base_url, token, timeout)
        self._http = httpx.AsyncClient(timeout=self.settings.timeout, transport=transport)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, call: calls.Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method,
                self.settings.url(call.path),
                params=call.query,
                json=call.body,
                headers=self.settings.headers(),
            )
        except httpx.TimeoutException as error:
            raise ModelServeError("timeout", f"{call.method} {call.path}: {error!r}") from error
        except httpx.HTTPError as error:
            raise ModelServeError("unreachable", f"{self.settings.base_url}: {error}") from error
        return calls.answer(call, response.status_code, response.content)

    # --- health, facts, telemetry ---------------------------------------------------------

    async def health(self) -> Health:
        return await self.send(calls.health())

    async def info(self) -> Info:
        return await self.send(calls.info())

    async def version(self) -> Version:
        return await self.send(calls.version())

    async def gpu_stats(self) -> GpuStats:
        return await self.send(calls.gpu_stats())

    async def system_stats(self) -> SystemStats:
        return await self.send(calls.system_stats())

    async def logs(
        self,
        component: str,
        lines: int = 100,
        since_seconds: int | None = None,
        container: str | None = None,
    ) -> Logs:
        return await self.send(calls.logs(component, lines, since_seconds, container))

    async def power_profile(self) -> PowerProfile:
        return await self.send(calls.power_profile())

    async def set_power_profile(self, profile: str) -> PowerProfile:
        return await self.send(calls.set_power_profile(profile))

    # --- models and the registry ----------------------------------------------------------

    async def list_models(
        self,
        *,
        name: str | None = None,
        tag: str | Sequence[str] | None = None,
        origin: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[ModelRecord]:
        return await self.send(
            calls.list_models(name=name, tag=tag, origin=origin, limit=limit, offset=offset)
        )

    async def upload(
        self, path: str | Path, *, filename: str | None = None, on_progress: Progress | None = None
    ) -> Upload:
        """Upload a file into the platform store (its presigned URL, or each part's),
        streamed from disk; the completed upload. A failed one is given up (deleted)."""
        path = Path(path)
        size = path.stat().st_size
        opened = await self.send(calls.create_upload(filename or path.name, size))
        try:
            counter, etags = Counter(size, on_progress), {}
            for piece in pieces(opened):
                response = await self._put(
                    piece.url, aread_piece(path, piece, counter), piece.length
                )
                if piece.part_number is not None:
                    etags[piece.part_number] = etag_of(response.headers, piece)
            return await self.send(calls.complete_upload(opened.upload_id, etags))
        except BaseException:
            await self._give_up(opened.upload_id)
            raise

    async def _put(self, url: str, content: AsyncIterator[bytes], length: int) -> httpx.Response:
        try:
            # The presigned URL is the authorisation: no bearer token goes to the store.
            response = await self._http.put(
                url, content=content, headers={"Content-Length": str(length)}
            )
        except httpx.HTTPError as error:
            raise ModelServeError("upload_failed", f"PUT to the store: {error!r}") from error
        if response.status_code >= 300:
            raise ModelServeError(
                "upload_failed", f"the store answered: {response.text[:300]}", response.status_code
            )
        return response

    async def _give_up(self, upload_id: str) -> None:
        # Else it expires with its URLs; the first error is the one to report.
        with contextlib.suppress(ModelServeError):
            await self.send(calls.delete_upload(upload_id))

    async def register_model(
        self,
        model_id: str,
        *,
        source: str | None = None,
        tags: str | Sequence[str] | None = None,
        name: str | None = None,
        uri: str | None = None,
        upload: str | Path | None = None,
        on_progress: Progress | None = None,
    ) -> Registration:
        """Register a version from `uri` (in the platform store) or from the local file
        `upload` (uploaded first). The registration's job: see wait_for_registration."""
        if (uri is None) == (upload is None):
            raise ValueError("register a checkpoint by exactly one of uri and upload")
        upload_id = None
        if upload is not None:
            upload_id = (await self.upload(upload, on_progress=on_progress)).upload_id
        return await self.send(
            calls.register_model(
                model_id, source=source, tags=tags, name=name, uri=uri, upload_id=upload_id
            )
        )

    async def registration(self, model_id: str) -> Registration:
        return await self.send(calls.registration(model_id))

    async def wait_for_registration(
        self,
        model_id: str,
        *,
        timeout: float = 600.0,  # noqa: ASYNC109 (the same call as Client's)
        poll_interval: float = 1.0,
        on_update: Callable[[Registration], None] | None = None,
    ) -> Registration:
        """Poll the registration until its version is ready; raises ModelServeError with
        the job's error code when it fails, `timeout` when it takes longer."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.registration(model_id)
            if on_update is not None:
                on_update(job)
            if settled(job):
                return job
            if time.monotonic() >= deadline:
                raise timed_out(model_id, job, timeout)
            await asyncio.sleep(poll_interval)

    async def set_active_model(self, model_id: str, *, reason: str | None = None) -> Activation:
        return await self.send(calls.set_active_model(model_id, reason=reason))

    async def active_models(self, *, name: str | None = None) -> list[ActiveModel]:
        return await self.send(calls.active_models(name=name))

    async def history(
        self, *, name: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> list[HistoryEntry]:
        return await self.send(calls.history(name=name, limit=limit, offset=offset))

    # --- servers --------------------------------------------------------------------------

    async def serve(
        self, *, model_name: str | None = None, model_uuid: str | None = None, **fields: Any
    ) -> Server:
        return await self.send(calls.serve(model_name=model_name, model_uuid=model_uuid, **fields))

    @overload
    async def status(self) -> list[Server]: ...
    @overload
    async def status(self, server_id: str) -> Server: ...
    async def status(self, server_id: str | None = None) -> list[Server] | Server:
        """The caller's servers (an admin's: all), or the one `server_id`."""
        if server_id is None:
            return await self.send(calls.servers())
        return await self.send(calls.server(server_id))

    async def stop(self, server_id: str) -> Server:
        return await self.send(calls.stop(server_id))

    # --- the OpenAI-compatible API --------------------------------------------------------

    async def chat(
        self, model: str, messages: Sequence[Mapping[str, Any]], **params: Any
    ) -> ChatCompletion:
        """A chat completion through the gateway (`max_tokens`, `temperature`, `budget`,
        … go in `params`)."""
        return await self.send(calls.chat(model, messages, **params))

    async def chat_stream(
        self, model: str, messages: Sequence[Mapping[str, Any]], **params: Any
    ) -> AsyncIterator[ChatChunk]:
        """As Client.chat_stream: the chunks as they come, to `[DONE]`."""
        call = calls.chat_stream(model, messages, **params)
        try:
            async with self._http.stream(
                call.method,
                self.settings.url(call.path),
                json=call.body,
                headers=self.settings.headers(),
            ) as response:
                if response.status_code >= 400:
                    raise error_of(response.status_code, await response.aread())
                reader = ChunkReader()
                async for line in response.aiter_lines():
                    chunk = reader.feed(line)
                    if chunk is not None:
                        yield chunk
                    if reader.done:
                        return
        except httpx.TimeoutException as error:
            raise ModelServeError("timeout", f"{call.method} {call.path}: {error!r}") from error
        except httpx.HTTPError as error:
            raise ModelServeError("unreachable", f"{self.settings.base_url}: {error}") from error
        raise chat_unfinished()

    # --- signing in and API keys ----------------------------------------------------------

    async def sign_in(self, username: str, password: str) -> Token:
        return await self.send(calls.sign_in(username, password))

    async def me(self) -> Me:
        return await self.send(calls.me())

    async def create_key(self, name: str, *, expires_in_days: int | None = None) -> ApiKeyCreated:
        return await self.send(calls.create_key(name, expires_in_days=expires_in_days))

    async def list_keys(
        self, *, limit: int | None = None, offset: int | None = None
    ) -> list[ApiKey]:
        return await self.send(calls.list_keys(limit=limit, offset=offset))

    async def revoke_key(self, key_id: str) -> None:
        await self.send(calls.revoke_key(key_id))

    # --- jobs -----------------------------------------------------------------------------

    async def list_jobs(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Job]:
        """The caller's jobs (an admin's: all), newest first, each with its `progress`."""
        return await self.send(
            job_calls.list_jobs(type=type, status=status, limit=limit, offset=offset)
        )

    async def job_stats(self) -> JobStats:
        return await self.send(job_calls.job_stats())

    async def get_job(self, job_id: str) -> Job:
        return await self.send(job_calls.get_job(job_id))

    async def cancel_job(self, job_id: str) -> Job:
        return await self.send(job_calls.cancel_job(job_id))

    @overload
    async def wait_for_job(
        self,
        job: str,
        *,
        timeout: float = ...,  # noqa: ASYNC109
        poll_interval: float = ...,
        on_progress: Callable[[Job], None] | None = ...,
    ) -> Job: ...
    @overload
    async def wait_for_job(
        self,
        job: J,
        *,
        timeout: float = ...,  # noqa: ASYNC109
        poll_interval: float = ...,
        on_progress: Callable[[J], None] | None = ...,
    ) -> J: ...
    async def wait_for_job(
        self,
        job: str | TypedJob,
        *,
        timeout: float = 3600.0,  # noqa: ASYNC109 (the same call as Client's)
        poll_interval: float = 2.0,
        on_progress: Callable[[Any], None] | None = None,
    ) -> Job | TypedJob:
        """Poll the job until it is done, failed or cancelled, and return it as it ended
        (check its `status`): by id, GET /jobs/{id} (a `Job`); given a job its type's
        route answered (`EvalJob`, `DataGenJob`, `Generation`), that route again, until
        the type's result is in it. `on_progress` hears every poll. Raises
        ModelServeError `timeout` when it is still running after `timeout` seconds."""
        call: calls.Call[Any] = (
            job_calls.get_job(job) if isinstance(job, str) else job_calls.refreshed(job)
        )
        deadline = time.monotonic() + timeout
        while True:
            current: Job | TypedJob = await self.send(call)
            if on_progress is not None:
                on_progress(current)
            if current.finished:
                return current
            if time.monotonic() >= deadline:
                raise job_timed_out(current, timeout)
            await asyncio.sleep(min(poll_interval, max(deadline - time.monotonic(), 0.0)))

    # --- evaluation, data generation, queued generation -----------------------------------

    async def eval_job(
        self,
        model_id: str,
        name: str,
        dataset_ref: str,
        max_samples: int | None = None,
        *,
        metrics: Sequence[str] | None = None,
        per_example_logging: bool | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        budget: int | None = None,
        algorithm: str | None = None,
        answer_pattern: str | None = None,
    ) -> EvalJob:
        """Queue an evaluation of `model_id` over the JSONL `dataset_ref` in the platform
        store (every example unless `max_samples`); unset fields take the platform's
        defaults. The queued job: see wait_for_job."""
        return await self.send(
            job_calls.eval_job(
                model_id,
                name,
                dataset_ref,
                max_samples,
                metrics=metrics,
                per_example_logging=per_example_logging,
                max_tokens=max_tokens,
                temperature=temperature,
                budget=budget,
                algorithm=algorithm,
                answer_pattern=answer_pattern,
            )
        )

    async def get_eval_job(self, job_id: str) -> EvalJob:
        return await self.send(job_calls.get_eval_job(job_id))

    async def list_eval_jobs(
        self, *, status: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> list[EvalJob]:
        return await self.send(job_calls.list_eval_jobs(status=status, limit=limit, offset=offset))

    async def eval_examples(
        self, job_id: str, *, offset: int | None = None, limit: int | None = None
    ) -> EvalExamples:
        """The per-example records of examples `offset` … `offset + limit - 1` that have
        finished (100 from 0 by default), also while the job runs."""
        return await self.send(job_calls.eval_examples(job_id, offset=offset, limit=limit))

    async def data_gen_job(
        self,
        model_id: str,
        *,
        num_examples: int,
        output_dir: str,
        strategy: str = "self_instruct",
        domain: str | None = None,
        seed_tasks: Sequence[Mapping[str, Any]] | None = None,
        seed_file: str | None = None,
        **config: Any,
    ) -> DataGenJob:
        """Queue a data-generation job writing JSONL shards under `output_dir`; `config`
        takes the body's other `config` fields (`shard_size`, `overgenerate`, …)."""
        return await self.send(
            job_calls.data_gen_job(
                model_id,
                num_examples=num_examples,
                output_dir=output_dir,
                strategy=strategy,
                domain=domain,
                seed_tasks=seed_tasks,
                seed_file=seed_file,
                **config,
            )
        )

    async def get_data_gen_job(self, job_id: str) -> DataGenJob:
        return await self.send(job_calls.get_data_gen_job(job_id))

    async def list_data_gen_jobs(
        self, *, status: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> list[DataGenJob]:
        return await self.send(
            job_calls.list_data_gen_jobs(status=status, limit=limit, offset=offset)
        )

    async def resume_data_gen_job(self, job_id: str) -> DataGenJob:
        """Run a cancelled, failed or short data-generation job on."""
        return await self.send(job_calls.resume_data_gen_job(job_id))

    async def generate(
        self,
        model: str,
        prompt: str | Sequence[str],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        mode: str | None = None,
    ) -> Generation:
        """Queue one prompt or several as a job (POST /generate); the texts are in the
        ended job's `generations` (see wait_for_job)."""
        return await self.send(
            job_calls.generate(
                model,
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                mode=mode,
            )
        )

    async def get_generation(self, job_id: str) -> Generation:
        return await self.send(job_calls.get_generation(job_id))

    # --- the arena ------------------------------------------------------------------------

    async def _events(self, call: calls.Call[Any]) -> AsyncIterator[BattleEvent]:
        """The events of a streamed battle's or turn's call as they come, to [DONE]."""
        reader = EventReader()
        try:
            async with self._http.stream(
                call.method,
                self.settings.url(call.path),
                params=call.query,
                json=call.body,
                headers=self.settings.headers(),
            ) as response:
                if response.status_code >= 400:
                    raise error_of(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    event = reader.feed(line)
                    if event is not None:
                        yield event
                    if reader.done:
                        return
        except httpx.TimeoutException as error:
            raise ModelServeError("timeout", f"{call.method} {call.path}: {error!r}") from error
        except httpx.HTTPError as error:
            raise ModelServeError("unreachable", f"{self.settings.base_url}: {error}") from error
        raise unfinished()

    @overload
    def battle(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        models: Sequence[str] | None = ...,
        max_tokens: int | None = ...,
        temperature: float | None = ...,
        stream: Literal[True] = ...,
    ) -> AsyncIterator[BattleEvent]: ...
    @overload
    def battle(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        models: Sequence[str] | None = ...,
        max_tokens: int | None = ...,
        temperature: float | None = ...,
        stream: Literal[False],
    ) -> Awaitable[ArenaTurn]: ...
    def battle(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        models: Sequence[str] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream: bool = True,
    ) -> AsyncIterator[BattleEvent] | Awaitable[ArenaTurn]:
        """A new battle, as Client.battle: its events for `async for` (the request is sent
        when the iteration starts); with `stream=False`, to await: both answers once
        whole."""
        call = arena_calls.battle(
            messages,
            models=models,
            max_tokens=max_tokens,
            temperature=temperature,
            stream=stream,
        )
        return self._events(call) if stream else self.send(call)

    @overload
    def battle_turn(
        self,
        battle_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = ...,
        temperature: float | None = ...,
        stream: Literal[True] = ...,
    ) -> AsyncIterator[BattleEvent]: ...
    @overload
    def battle_turn(
        self,
        battle_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = ...,
        temperature: float | None = ...,
        stream: Literal[False],
    ) -> Awaitable[ArenaTurn]: ...
    def battle_turn(
        self,
        battle_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stream: bool = True,
    ) -> AsyncIterator[BattleEvent] | Awaitable[ArenaTurn]:
        """The next turn of an open battle, as `battle` answers."""
        call = arena_calls.battle_turn(
            battle_id, messages, max_tokens=max_tokens, temperature=temperature, stream=stream
        )
        return self._events(call) if stream else self.send(call)

    async def vote(self, battle_id: str, vote: str) -> ArenaVote:
        """The one vote on one's battle (a, b, tie, both_bad): both models revealed."""
        return await self.send(arena_calls.vote(battle_id, vote))

    async def get_battle(self, battle_id: str) -> ArenaBattle:
        return await self.send(arena_calls.get_battle(battle_id))

    async def list_battles(
        self, *, limit: int | None = None, after: str | None = None
    ) -> ArenaBattles:
        """One's battles, newest first, a page at a time (`after`: the last page's
        `last_id`)."""
        return await self.send(arena_calls.list_battles(limit=limit, after=after))

    async def list_votes(
        self,
        *,
        counts: bool | None = None,
        voter: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> ArenaVotes:
        """One's votes (an admin's: everyone's, or `voter`'s), newest first; `counts`
        False: only those that do not count."""
        return await self.send(
            arena_calls.list_votes(counts=counts, voter=voter, limit=limit, after=after)
        )

    async def leaderboard(
        self, *, team: str | None = None, style_control: bool = False, bootstrap: int | None = None
    ) -> Leaderboard:
        """The global board, or `team`'s, as Client.leaderboard."""
        return await self.send(
            arena_calls.leaderboard(team=team, style_control=style_control, bootstrap=bootstrap)
        )
