"""The workers of one replica: claim a job, copy it, report progress, finish or fail.

The copy runs in threads (`transfers`); this module only orchestrates it from the event
loop: a report every `progress_seconds` renews the job's lease, and a report that finds
the job cancelled (or taken over) stops the copy, which then leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from modelserve.common.database import DatabaseUnavailable
from modelserve.common.objects import ObjectStore, StoreError
from modelserve.common.supervision import Backoff, supervised
from modelserve.download import workdirs
from modelserve.download.gguf_metadata import GgufMetadata, read_metadata
from modelserve.download.jobs import Jobs, NameTaken
from modelserve.download.metrics import DownloadMetrics
from modelserve.download.records import build_record
from modelserve.download.registration import UPLOADS_PREFIX
from modelserve.download.registry import Registry
from modelserve.download.settings import DownloadSettings
from modelserve.download.sources import InvalidSource, Source, check_sha256
from modelserve.download.tables import Download, Kind, ModelRecord, State
from modelserve.download.tagging import backfill
from modelserve.download.transfers import Cancelled, Transfer, TransferFailed, plan

logger = logging.getLogger(__name__)


class Lost(RuntimeError):
    """The job is no longer this worker's: cancelled, or taken over by another."""


def _name_taken(name: str, who: str | None, kind: Kind = Kind.REGISTER) -> TransferFailed:
    if kind == Kind.DOWNLOAD:
        return TransferFailed(
            "name_not_yours",
            f"model name {name!r} has versions another user registered: {who} may not"
            " download under it; name another",
        )
    return TransferFailed(
        "name_not_yours",
        f"model name {name!r} has versions that {who} did not register (a downloaded "
        "version makes a name the platform's): register under another name",
    )


def job_source(job: Download) -> Source:
    return Source(job.source_bucket, key=job.source_key, prefix=job.source_prefix)


class Workers:
    def __init__(
        self,
        settings: DownloadSettings,
        jobs: Jobs,
        upstream: ObjectStore,
        platform: ObjectStore,
        metrics: DownloadMetrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.jobs = jobs
        self.upstream = upstream
        self.platform = platform
        self.registry = Registry(jobs.pool)
        self.wake = asyncio.Event()

    def source_store(self, job: Download) -> ObjectStore:
        """Where a job copies from: upstream for a download, the platform store itself for
        a registration."""
        return self.platform if job.kind == Kind.REGISTER else self.upstream

    async def run(self) -> None:
        """`settings.jobs` workers, a listener that wakes them and the back-fill of object
        tags, each supervised (restarted with backoff when it fails); until cancelled."""
        backoff = Backoff(self.settings.restart_seconds, self.settings.restart_max_seconds)
        await self._sweep()
        await supervised(
            "taking back interrupted downloads", self._take_back, backoff, until_done=True
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(
                supervised("job notifications", lambda: self.jobs.listen(self.wake), backoff)
            )
            group.create_task(
                supervised("object tag back-fill", self._backfill_tags, backoff, until_done=True)
            )
            for number in range(1, self.settings.jobs + 1):
                group.create_task(supervised(f"download worker {number}", self._loop, backoff))

    async def _loop(self) -> None:
        while True:
            # Cleared before looking, so that a job queued while we look still wakes us.
            self.wake.clear()
            try:
                job = await self.jobs.claim(self.settings.worker_id, self.settings.lease_seconds)
            except DatabaseUnavailable as error:
                logger.warning("no jobs claimed: %s", error)
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.settings.poll_seconds)
                continue
            await self.process(job)

    async def _sweep(self) -> None:
        """Remove what attempts killed with their process left in the work directory."""
        root = self.settings.work_dir
        try:
            removed, used = await asyncio.to_thread(workdirs.sweep, root)
        except OSError as error:
            logger.warning("what killed attempts left in %s stays there: %s", root, error)
            return
        if removed:
            logger.info(
                "removed %d work directories of killed attempts from %s (%.1f MiB)",
                removed,
                root,
                used / (1 << 20),
            )

    async def _take_back(self) -> None:
        """Jobs this worker held before it restarted are taken over at once."""
        while True:
            try:
                released = await self.jobs.release_own(self.settings.worker_id)
            except DatabaseUnavailable as error:
                logger.warning("jobs of an earlier run not released yet: %s", error)
                await asyncio.sleep(self.settings.poll_seconds)
                continue
            if released:
                logger.info("taking back %d download(s) interrupted by a restart", released)
            return

    async def _backfill_tags(self) -> None:
        """Tag the stored files of records written before the service tagged them."""
        tagged = await asyncio.to_thread(backfill, self.platform, await self.jobs.models())
        if tagged:
            logger.info("tagged %d stored file(s) of earlier model records", tagged)

    async def process(self, job: Download) -> None:
        """One attempt at one job, counted and timed by how it ended."""
        started = time.monotonic()
        outcome = "failed"  # an error that escapes `_attempt`: the job is not finished
        self.metrics.running.inc()
        try:
            outcome = await self._attempt(job)
        finally:
            self.metrics.running.dec()
            self.metrics.attempts.labels(job.kind, outcome).inc()
            self.metrics.attempt_seconds.labels(job.kind, outcome).observe(
                time.monotonic() - started
            )

    async def _attempt(self, job: Download) -> str:
        """One attempt at one job, to ready or failed (or nothing, if it was lost); its
        outcome (`metrics.OUTCOMES`)."""
        logger.info("download %s: attempt %d", job.model_id, job.attempts)
        transfer: Transfer | None = None
        try:
            with workdirs.workdir(self.settings.work_dir, f"download-{job.model_id}-") as path:
                transfer = await self._prepare(job, path)
                await self._copy(job, transfer)
                await self._report(job, transfer, state=State.VERIFYING)
                outcome = transfer.verify()
                metadata = await self._metadata(outcome.header)
                record = build_record(
                    job, transfer.plan, outcome, metadata, self.settings.platform_bucket
                )
                await self._check_name(job, record.name)
                await self._report(job, transfer)  # still ours? nothing is visible yet
                await asyncio.to_thread(transfer.commit, outcome)
                if not await self._finish(job, record):
                    raise Lost("cancelled or taken over before it was recorded")
                logger.info("download %s: ready (%s)", job.model_id, record.uri)
                await self._remove_upload(job)
                return "ready"
        except (Lost, Cancelled) as error:
            logger.info("download %s stopped: %s", job.model_id, error)
            await self._discard(job, transfer, owned=False)
            return "stopped"
        except (TransferFailed, StoreError, InvalidSource) as error:
            if self._outage(job, error):
                # Kept as it is: its lease runs out and it is claimed again (the next
                # attempt aborts the uploads left open), as after a database outage.
                logger.warning("download %s: %s; tried again later", job.model_id, error)
                await self._discard(job, transfer, owned=False)
                return "retried"
            logger.warning("download %s failed: %s", job.model_id, error)
            await self._discard(job, transfer)
            await self._fail(job, error.code, str(error))
            return "failed"
        except DatabaseUnavailable as error:
            # Nothing can be recorded; the lease runs out and the job is claimed again.
            logger.warning("download %s: %s", job.model_id, error)
            await self._discard(job, transfer, owned=False)
            return "retried"
        except Exception as error:
            # A bug: this job fails with what is known, and the worker goes on with others.
            logger.exception("download %s: unexpected error", job.model_id)
            await self._discard(job, transfer)
            await self._fail(job, "internal_error", f"{type(error).__name__}: {error}")
            return "failed"

    def _outage(self, job: Download, error: Exception) -> bool:
        """Whether `error` is a store that could not be reached, with attempts left."""
        return (
            isinstance(error, StoreError)
            and error.code == "store_unreachable"
            and job.attempts < self.settings.store_outage_attempts
        )

    async def _check_name(self, job: Download, name: str) -> None:
        """Before committing anything: a user's registration may add a version only to a
        name that is new or holds only versions they registered, a user's download only
        to one no other user registered versions to (checked again, under the name's lock,
        when it is recorded)."""
        who = job.name_checked_for
        if who is not None and not await self.registry.name_is_open_to(name, who, job.kind):
            raise _name_taken(name, who, job.kind)

    async def _finish(self, job: Download, record: ModelRecord) -> bool:
        try:
            return await self.jobs.finish(job, record)
        except NameTaken as error:
            raise _name_taken(record.name, job.name_checked_for, job.kind) from error

    async def _remove_upload(self, job: Download) -> None:
        """A registered upload's staging copy is not needed any more."""
        key = job.source_key
        if job.kind != Kind.REGISTER or key is None or not key.startswith(UPLOADS_PREFIX):
            return
        try:
            await asyncio.to_thread(self.platform.remove, job.source_bucket, key)
        except StoreError as error:
            logger.warning("upload s3://%s/%s not removed: %s", job.source_bucket, key, error)

    async def _prepare(self, job: Download, workdir: Path) -> Transfer:
        source = job_source(job)
        store = self.source_store(job)
        copy = await asyncio.to_thread(
            plan, store, source, job.model_id, check_sha256(job.expected_sha256)
        )
        transfer = Transfer(
            store,
            self.platform,
            self.settings.platform_bucket,
            copy,
            part_size=self.settings.part_size,
            parallel=self.settings.parallel_parts,
            workdir=workdir,
            header_bytes=self.settings.gguf_header_bytes,
        )
        if not await self.jobs.report(
            job,
            self.settings.lease_seconds,
            bytes_total=copy.size,
            files_total=len(copy.files),
        ):
            raise Lost("cancelled before it started")
        if job.attempts > 1:
            await asyncio.to_thread(transfer.clear_leftovers)
        return transfer

    async def _copy(self, job: Download, transfer: Transfer) -> None:
        started = time.monotonic()
        copying = asyncio.ensure_future(asyncio.to_thread(transfer.copy))
        try:
            while True:
                done, _ = await asyncio.wait({copying}, timeout=self.settings.progress_seconds)
                elapsed = max(time.monotonic() - started, 1e-3)
                rate = transfer.progress.bytes_done / elapsed
                if done:
                    copying.result()
                    await self._report(job, transfer, rate=rate)
                    return
                await self._report(job, transfer, rate=rate)
        except BaseException:
            transfer.stop.set()
            with contextlib.suppress(BaseException):
                await copying
            raise
        finally:
            self.metrics.copied.labels(job.kind).inc(transfer.progress.bytes_done)

    async def _report(
        self,
        job: Download,
        transfer: Transfer,
        *,
        state: State | None = None,
        rate: float | None = None,
    ) -> None:
        progress = transfer.progress
        if not await self.jobs.report(
            job,
            self.settings.lease_seconds,
            state=state,
            bytes_done=progress.bytes_done,
            files_done=progress.files_done,
            rate=rate,
        ):
            raise Lost("cancelled, or taken over by another worker")

    async def _metadata(self, header: Path | None) -> GgufMetadata | None:
        if header is None:
            return None
        try:
            return await asyncio.to_thread(read_metadata, header)
        except ValueError as error:
            # A model whose header cannot be read is still a model; its record says less.
            logger.warning("GGUF metadata not read: %s", error)
            return None

    async def _discard(
        self, job: Download, transfer: Transfer | None, *, owned: bool = True
    ) -> None:
        """Leave no partial model: open uploads aborted, and files this attempt already
        committed removed, if the job is still this worker's (renewing the lease makes
        sure no other worker takes it meanwhile). A job that was lost may have been
        taken over: the files at its keys may be the new owner's."""
        if transfer is None:
            return
        try:
            remove = owned and transfer.committed
            if remove:
                remove = await self.jobs.report(job, self.settings.lease_seconds)
            await asyncio.to_thread(transfer.discard, remove_committed=remove)
        except (StoreError, DatabaseUnavailable) as error:
            logger.warning("leftovers of %s not removed: %s", transfer.plan.model_id, error)

    async def _fail(self, job: Download, code: str, message: str) -> None:
        self.metrics.failures.labels(code).inc()
        try:
            await self.jobs.fail(job, code, message)
        except DatabaseUnavailable as error:
            logger.warning("failure of %s not recorded: %s", job.model_id, error)
