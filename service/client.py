"""`EnrichmentClient`: kick root jobs, wait for their families, read roots and timelines."""

import asyncio
import time
import uuid
from collections.abc import Iterable
from contextlib import suppress
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from pydantic import ValidationError
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError
from taskiq import AsyncBroker

from service import queries
from service.broker import create_broker
from service.config import Settings
from service.errors import (
    BrokerUnavailableError,
    InvalidRequestError,
    StoreUnavailableError,
    WaitTimeoutError,
)
from service.executors import Plan
from service.logbook import entry_document, queue_entries
from service.models import JobError, JobStatus, JobType, LogEntry
from service.models.base import utc_now
from service.models.jobs import AlbumJob, ArtistJob, JobPayload, LibraryJob
from service.models.views import FamilyProgress, RootSummary, Timeline
from service.redaction import protect
from service.registry import JOBS
from service.retention import PruneReport, prune
from service.spawning import kick_job, queued_entry
from service.store import Store, connect_store
from service.urls import redact_url

POLL_SECONDS = 0.25


class EnrichmentClient:
    """Kick enrichment jobs as roots and read their logs. Use as an async context manager.

    Entering connects to the store only; Redis is reached on the first kick, so reading
    (`roots`, `timeline`, `wait_for_root`) works while Redis is down.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        broker: AsyncBroker | None = None,
        read_logs: bool = True,
    ):
        self.settings = settings or Settings()
        protect(*self.settings.secret_values())
        # Kicking needs only the broker; a caller that never reads logs (the dashboard's
        # form) skips opening a store connection of its own.
        self._read_logs = read_logs
        self._broker = broker
        # A broker passed in is its owner's to start and stop; ours starts on the first kick.
        self._owns_broker = broker is None
        self._broker_started = broker is not None
        self._broker_lock = asyncio.Lock()
        self._store: Store | None = None

    async def __aenter__(self) -> Self:
        if self._read_logs:
            self._store = await connect_store(self.settings)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None and self._broker_started and self._owns_broker:
            await self._broker.shutdown()
        if self._store is not None:
            await self._store.close()

    async def kick_album(
        self,
        *,
        mbid: str | None = None,
        title: str | None = None,
        artist: str | None = None,
        force: bool = False,
    ) -> str:
        """Start a root `enrich_album` job; return its job id.

        `force` runs it (and its family) even for what was enriched in ENRICH_FRESH_DAYS.
        """
        payload = _payload(AlbumJob, mbid=mbid, title=title, artist=artist, force=force)
        return await self.kick(JobType.ENRICH_ALBUM, payload)

    async def kick_artist(
        self, *, mbid: str | None = None, name: str | None = None, force: bool = False
    ) -> str:
        """Start a root `enrich_artist` job; return its job id (`force`: as `kick_album`)."""
        payload = _payload(ArtistJob, mbid=mbid, name=name, force=force)
        return await self.kick(JobType.ENRICH_ARTIST, payload)

    async def kick(
        self, job_type: str, payload: JobPayload | dict[str, Any], *, job_id: str | None = None
    ) -> str:
        """Start a root job of any registered type; return its job id.

        A `dict` payload is sent as given and validated by the worker (which logs a bad one).
        """
        if job_type not in JOBS:
            raise InvalidRequestError(f"unknown job type {job_type!r}")
        typed = payload if isinstance(payload, JobPayload) else None
        raw = typed.model_dump(mode="json", by_alias=True) if typed is not None else payload
        job_id = job_id or uuid.uuid4().hex
        # On the timeline (queued) before it is sent: the Roots page shows it at once.
        store = await self._opened_store()
        entry = queued_entry(job_id, job_type, typed, raw_payload=dict(raw))
        timeout = self.settings.log_write_timeout_seconds
        await queue_entries(store.logs, [entry], timeout=timeout)
        try:
            await kick_job(await self._started_broker(), job_type, job_id, dict(raw))
        except BrokerUnavailableError as exc:
            await _never_sent(store, entry, exc)
            raise
        return job_id

    async def rerun(self, job_id: str) -> str:
        """Run a failed child, or a whole root, again as a new job; return the new job's id.

        A child's re-run joins the same family (same root, so the timeline tells the whole
        story); a root's starts a new family. Either carries `rerunOf` = `job_id`, goes
        through the same kick path as any job, and is forced past ENRICH_FRESH_DAYS.
        """
        latest = await self.job(job_id)
        spec = JOBS.get(latest.job_type or "") if latest is not None else None
        if latest is None or spec is None:
            raise InvalidRequestError(f"no job {job_id[:100]!r} in the log to re-run")
        if latest.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            raise InvalidRequestError(f"job {job_id} is still {latest.status}: wait for it")
        if not latest.is_root_job and latest.status != JobStatus.FAILED:
            raise InvalidRequestError(
                f"job {job_id} {latest.status}: only a failed child, or a root, is re-run"
            )
        if latest.payload is None:
            raise InvalidRequestError(
                f"job {job_id}'s input was not kept (logged before re-runs existed, or over "
                "8 KB, as a library's album list): kick it again instead"
            )
        try:
            payload = spec.payload_model.model_validate(
                {**latest.payload, "force": True, "rerunOf": job_id}
            )
        except ValidationError as exc:
            raise InvalidRequestError(f"job {job_id}'s kept input is not valid now") from exc
        return await self.kick(spec.job_type, payload)

    async def job(self, job_id: str) -> LogEntry | None:
        """A job's latest attempt, or None when the log has none."""
        return await self._read(queries.latest_attempt(job_id))

    async def reruns_of(self, job_id: str) -> list[str]:
        """The ids of the jobs that re-run `job_id`, oldest first."""
        return (await self._read(queries.reruns([job_id]))).get(job_id, [])

    async def wait_for_root(self, root_id: str, timeout: float = 60.0) -> Timeline:
        """Wait until the root and every job spawned in its family has a terminal log."""
        deadline = time.monotonic() + timeout
        while True:
            family = await self._read(queries.timeline(root_id))
            pending = queries.pending_jobs(root_id, family.entries, self.settings.job_max_attempts)
            if not pending:
                return family
            if time.monotonic() >= deadline:
                states = queries.unfinished(
                    root_id,
                    family.entries,
                    max_attempts=self.settings.job_max_attempts,
                    lease_seconds=self.settings.job_lease_seconds,
                    now=utc_now(),
                )
                raise WaitTimeoutError(root_id, timeout, [job.describe() for job in states])
            await asyncio.sleep(POLL_SECONDS)

    async def roots(
        self,
        *,
        limit: int = 50,
        skip: int = 0,
        status: str | None = None,
        job_type: str | None = None,
    ) -> list[RootSummary]:
        """Root jobs, newest first, with their family roll-ups."""
        filters = queries.RootFilters(status=status, job_type=job_type)
        max_attempts = self.settings.job_max_attempts
        return await self._read(
            queries.roots_page(filters, limit=limit, skip=skip, max_attempts=max_attempts)
        )

    async def timeline(self, root_id: str) -> Timeline:
        """A root's entries, then its family's by `startedAt`."""
        return await self._read(queries.timeline(root_id))

    async def progress(self, root_id: str) -> FamilyProgress:
        """A family in numbers (one aggregation, however big it is)."""
        return await self._read(queries.family_progress(root_id))

    async def kick_library(
        self, albums: Iterable[AlbumJob], *, source: str, force: bool = False
    ) -> str:
        """Start ONE root (`enrich_library`) whose children are these albums; return its id.

        The whole run is one family, flat like any other: `wait_for_root`, `progress` and
        the dashboard follow it by the root's id.
        """
        payload = _payload(LibraryJob, source=source, albums=list(albums), force=force)
        return await self.kick(JobType.ENRICH_LIBRARY, payload)

    async def _read[T](self, plan: Plan[T]) -> T:
        store = await self._opened_store()
        try:
            return await store.reader.run(plan)
        except PyMongoError as exc:
            raise StoreUnavailableError(f"cannot read the job log: {exc}") from exc

    async def prune(self, *, older_than: datetime, dry_run: bool = False) -> PruneReport:
        """Delete whole families whose last entry is older than `older_than` (never unfinished)."""
        return await prune(await self._opened_store(), older_than=older_than, dry_run=dry_run)

    async def _opened_store(self) -> Store:
        if self._store is None:
            self._store = await connect_store(self.settings)
        return self._store

    async def _started_broker(self) -> AsyncBroker:
        async with self._broker_lock:  # two first kicks at once start one broker
            if self._broker is None:
                self._broker = create_broker(self.settings)
            if not self._broker_started:
                try:
                    await self._broker.startup()
                except (RedisError, OSError) as exc:
                    where = redact_url(self.settings.redis_url)
                    raise BrokerUnavailableError(f"cannot reach Redis at {where}: {exc}") from exc
                self._broker_started = True
            return self._broker


def _payload[P: JobPayload](model: type[P], **fields: Any) -> P:
    try:
        return model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        reasons = "; ".join(
            ": ".join([*map(str, error["loc"]), str(error["msg"]).removeprefix("Value error, ")])
            for error in exc.errors()
        )
        raise InvalidRequestError(reasons) from exc


async def _never_sent(store: Store, entry: LogEntry, exc: Exception) -> None:
    # The queued entry must not wait forever for a message that was never sent.
    error = JobError(type=type(exc).__name__, message=f"never sent: {exc}", retryable=False)
    failed = entry.model_copy(
        update={"status": JobStatus.FAILED, "error": error, "finished_at": utc_now()}
    )
    # Only while still queued: if the message did go out, a worker's entry stands.
    with suppress(PyMongoError):
        await store.logs.update_one(
            {"jobId": entry.job_id, "attempt": entry.attempt, "status": JobStatus.QUEUED.value},
            {"$set": entry_document(failed)},
        )
