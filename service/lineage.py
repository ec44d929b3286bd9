"""The one mechanism that runs a processor: it logs every attempt, spawns children, retries.

No processor kicks a task or writes a log itself. A processor fills a `JobRun`; this
module turns it into exactly one `EnrichmentLog` per attempt and kicks the children it
asked for with `parentJobId` = the root's job id, so lineage stays flat at any depth.
"""

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure, DuplicateKeyError
from redis.exceptions import RedisError
from taskiq import AsyncBroker, Context
from taskiq.kicker import AsyncKicker
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from service.config import Settings
from service.errors import (
    BrokerUnavailableError,
    EnrichmentError,
    InvalidRequestError,
    JobCancelledError,
    JobTimeoutError,
    StoreUnavailableError,
)
from service.models import EnrichmentLog, JobError, JobStatus, LogEntry, WorkerInfo
from service.models.base import CamelModel, utc_now
from service.models.jobs import JobPayload

logger = logging.getLogger(__name__)

# Child job ids are derived from the parent's id, so a redelivered parent re-kicks the
# same children and their logs upsert onto the same entries instead of doubling.
CHILD_ID_NAMESPACE = uuid.UUID("6f0c1c36-2f7a-4c55-9a0e-0d1b6a1e8f31")
ATTEMPT_LABEL = "attempt"
TASK_LABELS: dict[str, Any] = {"ack_type": "manual"}
# One document per (root, processor, entity) a family has spawned: see `claim_entity`.
CLAIMS_COLLECTION = "job_claims"

P = TypeVar("P", bound=JobPayload)
D = TypeVar("D", bound=CamelModel)


@dataclass
class Spawn:
    """A child job a processor asks for."""

    job_type: str
    payload: JobPayload


@dataclass
class JobRun[D: CamelModel]:
    """What a processor reports while it runs; kept even when it fails."""

    job_id: str
    attempt: int
    job_type: str
    entity_type: str
    details: D
    entity_id: str | None = None
    entity_name: str | None = None
    status: JobStatus = JobStatus.SUCCESS
    fields_enriched: list[str] = field(default_factory=list)
    spawns: list[Spawn] = field(default_factory=list)
    spawned_job_ids: list[str] = field(default_factory=list)

    def spawn(self, job_type: str, payload: JobPayload) -> None:
        """Ask for a child job; it is kicked once this job has succeeded."""
        self.spawns.append(Spawn(job_type, payload))


Processor = Callable[[P, JobRun[D], Any], Awaitable[None]]


@dataclass(frozen=True)
class JobSpec[P: JobPayload, D: CamelModel]:
    """A processor and the types around it; a task is registered per spec."""

    job_type: str
    entity_type: str
    payload_model: type[P]
    details_model: type[D]
    processor: Processor[P, D]


async def kick_job(
    broker: AsyncBroker,
    job_type: str,
    job_id: str,
    payload: dict[str, Any],
    labels: dict[str, Any] | None = None,
) -> None:
    """Send one job message: `job_type`'s task, with this task id, payload and labels."""
    kicker: AsyncKicker[Any, Any] = AsyncKicker(job_type, broker, {**TASK_LABELS, **(labels or {})})
    try:
        await kicker.with_task_id(job_id).kiq(job=payload)
    except (RedisError, OSError) as exc:
        raise BrokerUnavailableError(f"could not send {job_type} job {job_id}: {exc}") from exc


def child_job_id(parent_job_id: str, index: int, job_type: str) -> str:
    """The deterministic id of a job's `index`-th child."""
    return uuid.uuid5(CHILD_ID_NAMESPACE, f"{parent_job_id}/{index}/{job_type}").hex


def describe_error(exc: BaseException) -> JobError:
    """The stored form of an exception: its type, message and whether a retry may help."""
    retryable = isinstance(exc, EnrichmentError) and exc.retryable
    return JobError(type=type(exc).__name__, message=str(exc) or repr(exc), retryable=retryable)


class JobRunner:
    """Runs processors for one worker: log every attempt, spawn children, schedule retries."""

    def __init__(self, broker: AsyncBroker, settings: Settings, resources: Any) -> None:
        self._broker = broker
        self._settings = settings
        self._resources = resources
        self._worker = WorkerInfo(host=socket.gethostname(), pid=os.getpid())
        self._running: set[asyncio.Task[Any]] = set()
        self._writes: set[asyncio.Future[None]] = set()

    async def run(self, spec: JobSpec[Any, Any], raw_payload: Any, context: Context) -> None:
        """Run one attempt of `spec` for a received message, then acknowledge it."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await self._attempt(spec, raw_payload, context)
        finally:
            self._running.discard(task)

    async def drain(self, grace_seconds: float) -> None:
        """Let running jobs finish for up to `grace_seconds`, then cancel (and log) the rest."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_seconds)
        leftover = set(self._running)
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover)
        if self._writes:  # cancellation logs still being written
            await asyncio.wait(set(self._writes))

    async def _attempt(self, spec: JobSpec[Any, Any], raw_payload: Any, context: Context) -> None:
        message = context.message
        attempt = int(message.labels.get(ATTEMPT_LABEL, 1))
        run = JobRun(
            message.task_id, attempt, spec.job_type, spec.entity_type, spec.details_model()
        )
        parent_job_id = _parent_of(raw_payload)
        started, clock = utc_now(), time.monotonic()
        try:
            error = await self._execute(spec, raw_payload, run)
        except asyncio.CancelledError:
            # Shutdown mid-job: log it, leave the message unacknowledged for redelivery. The
            # write runs as its own task, so a second cancel cannot cut it short.
            cancelled = JobCancelledError("the worker shut down before the job finished")
            write = asyncio.ensure_future(self._log(run, parent_job_id, started, clock, cancelled))
            self._writes.add(write)
            write.add_done_callback(self._writes.discard)
            with suppress(asyncio.CancelledError):
                await asyncio.shield(write)
            raise
        await self._log(run, parent_job_id, started, clock, error)
        retryable = error is not None and describe_error(error).retryable
        if retryable and attempt < self._settings.job_max_attempts:
            await self._schedule_retry(context, attempt)
        if context.is_ackable:
            await context.ack()

    async def _execute(
        self, spec: JobSpec[Any, Any], raw_payload: Any, run: JobRun[Any]
    ) -> BaseException | None:
        try:
            payload = spec.payload_model.model_validate(raw_payload)
        except ValidationError as exc:
            return InvalidRequestError(f"invalid {spec.job_type} payload: {_summarise(exc)}")
        try:
            with anyio.fail_after(self._settings.job_timeout_seconds):
                await spec.processor(payload, run, self._resources)
            if run.status != JobStatus.FAILED:
                await self._spawn_children(run, payload.parent_job_id or run.job_id)
        except TimeoutError:
            limit = self._settings.job_timeout_seconds
            return JobTimeoutError(f"{spec.job_type} exceeded its {limit:g}s time limit")
        except EnrichmentError as exc:
            return exc
        except Exception as exc:  # a bug: record it, do not retry it
            logger.exception("%s %s crashed", spec.job_type, run.job_id)
            return exc
        return None

    async def _spawn_children(self, run: JobRun[Any], root_id: str) -> None:
        for index, spawn in enumerate(run.spawns):
            child_id = child_job_id(run.job_id, index, spawn.job_type)
            if not await claim_entity(root_id, spawn, child_id):
                continue  # this family already runs this processor for this entity
            payload = spawn.payload.model_copy(update={"parent_job_id": root_id})
            await kick_job(
                self._broker,
                spawn.job_type,
                child_id,
                payload.model_dump(mode="json", by_alias=True),
            )
            run.spawned_job_ids.append(child_id)

    async def _log(
        self,
        run: JobRun[Any],
        parent_job_id: str | None,
        started: datetime,
        clock: float,
        error: BaseException | None,
    ) -> None:
        status = JobStatus.FAILED if error is not None else run.status
        entry = LogEntry(
            job_id=run.job_id,
            parent_job_id=parent_job_id,
            is_root_job=parent_job_id is None,
            job_type=run.job_type,
            entity_type=run.entity_type,
            entity_id=run.entity_id,
            entity_name=run.entity_name,
            status=status,
            attempt=run.attempt,
            started_at=started,
            finished_at=utc_now(),
            duration_ms=round((time.monotonic() - clock) * 1000),
            error=describe_error(error) if error is not None else None,
            fields_enriched=run.fields_enriched,
            spawned_job_ids=run.spawned_job_ids,
            # As a plain dict: LogEntry re-types it by jobType, and any model fits.
            details=run.details.model_dump(mode="python", by_alias=True),
            worker=self._worker,
        )
        await write_log(entry, timeout=self._settings.log_write_timeout_seconds)

    async def _schedule_retry(self, context: Context, attempt: int) -> None:
        # Hand-written rather than taskiq's SmartRetryMiddleware: that middleware re-kicks
        # after the task returned (so after our manual ack) and RedisStreamBroker ignores
        # its `delay` label. Here the retry is kicked, delayed, before the message is acked.
        jitter = random.uniform(0, self._settings.job_retry_delay_seconds)  # noqa: S311 - not crypto
        delay = self._settings.retry_delay(attempt) + jitter
        logger.info(
            "retrying %s in %.1fs (attempt %d)",
            context.message.task_id,
            delay,
            attempt + 1,
        )
        await asyncio.sleep(delay)
        message = context.message
        await kick_job(
            self._broker,
            message.task_name,
            message.task_id,
            message.kwargs["job"],
            {**message.labels, ATTEMPT_LABEL: attempt + 1},
        )


async def claim_entity(root_id: str, spawn: Spawn, child_id: str) -> bool:
    """Claim (root, processor, entity) for a child; False when another job holds the claim."""
    claims = EnrichmentLog.get_pymongo_collection().database[CLAIMS_COLLECTION]
    claim_id = f"{root_id}/{spawn.job_type}/{spawn.payload.entity_key}"
    try:
        # An insert on a unique _id: atomic, so two parents racing cannot both win.
        await claims.insert_one({"_id": claim_id, "jobId": child_id, "claimedAt": utc_now()})
    except DuplicateKeyError:
        holder = await claims.find_one({"_id": claim_id})
        # The same child again (its parent was redelivered): kick it again, idempotently.
        return holder is not None and holder.get("jobId") == child_id
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not claim {claim_id}: {exc}") from exc
    return True


async def write_log(entry: LogEntry, *, timeout: float) -> None:
    """Upsert one attempt's log on (jobId, attempt), retrying while the store is unreachable."""
    document = entry.model_dump(mode="python", by_alias=True)
    collection = EnrichmentLog.get_pymongo_collection()
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(ConnectionFailure),
        stop=stop_after_delay(timeout),
        wait=wait_random_exponential(multiplier=0.2, max=5),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                await collection.replace_one(
                    {"jobId": entry.job_id, "attempt": entry.attempt},
                    document,
                    upsert=True,
                )
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not write the log of {entry.job_id}: {exc}") from exc


def _parent_of(raw_payload: Any) -> str | None:
    if isinstance(raw_payload, dict):
        parent = raw_payload.get("parentJobId", raw_payload.get("parent_job_id"))
        return parent if isinstance(parent, str) and parent else None
    return None


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}" for err in exc.errors()
    )
