"""`JobRunner`: the one mechanism that runs a processor, logs every attempt, spawns, retries.

No processor kicks a task or writes a log itself. A processor fills a `JobRun`; the runner
turns it into exactly one `EnrichmentLog` per attempt and kicks the children it asked for
with `parentJobId` = the root's job id, so lineage stays flat at any depth.
"""

import asyncio
import logging
import os
import random
import socket
import time
from contextlib import suppress
from datetime import datetime
from typing import Any

import anyio
from pydantic import ValidationError
from taskiq import AsyncBroker, Context

from service.config import Settings
from service.errors import (
    EnrichmentError,
    InvalidRequestError,
    JobCancelledError,
    JobTimeoutError,
)
from service.logbook import describe_error, log_entry, write_log
from service.models import JobStatus, WorkerInfo
from service.models.base import utc_now
from service.processing import AnySpec, JobRun
from service.resources import WorkerResources
from service.spawning import ATTEMPT_LABEL, child_job_id, claim_entity, kick_job

logger = logging.getLogger(__name__)


class JobRunner:
    """Runs processors for one worker: log every attempt, spawn children, schedule retries."""

    def __init__(self, broker: AsyncBroker, settings: Settings, resources: WorkerResources) -> None:
        self._broker = broker
        self._settings = settings
        self._resources = resources
        self._worker = WorkerInfo(host=socket.gethostname(), pid=os.getpid())
        self._running: set[asyncio.Task[Any]] = set()
        self._writes: set[asyncio.Future[None]] = set()

    async def run(self, spec: AnySpec, raw_payload: Any, context: Context) -> None:
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

    async def _attempt(self, spec: AnySpec, raw_payload: Any, context: Context) -> None:
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
        self, spec: AnySpec, raw_payload: Any, run: JobRun[Any]
    ) -> BaseException | None:
        try:
            payload = spec.payload_model.model_validate(raw_payload)
        except ValidationError as exc:
            return InvalidRequestError(f"invalid {spec.job_type} payload: {_summarise(exc)}")
        try:
            with anyio.fail_after(self._settings.job_timeout_seconds):
                await spec.processor(payload, run, self._resources.providers)
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
        claims = self._resources.store.claims
        for index, spawn in enumerate(run.spawns):
            child_id = child_job_id(run.job_id, index, spawn.job_type)
            if not await claim_entity(claims, root_id, spawn, child_id):
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
        entry = log_entry(
            run,
            parent_job_id=parent_job_id,
            started=started,
            duration_ms=round((time.monotonic() - clock) * 1000),
            error=error,
            worker=self._worker,
        )
        logs = self._resources.store.logs
        await write_log(logs, entry, timeout=self._settings.log_write_timeout_seconds)

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


def _parent_of(raw_payload: Any) -> str | None:
    if isinstance(raw_payload, dict):
        parent = raw_payload.get("parentJobId", raw_payload.get("parent_job_id"))
        return parent if isinstance(parent, str) and parent else None
    return None


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}" for err in exc.errors()
    )
