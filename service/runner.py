"""`JobRunner`: the one mechanism that runs a processor, logs every attempt, spawns, retries.

No processor kicks a task or writes a log itself. A processor fills a `JobRun`; the runner
decides from the log which attempt a delivery is (`logbook.begin_attempt`), marks it
running, keeps it alive (heartbeat in the store, lease in Redis), writes its outcome, queues
the children it asked for with `parentJobId` = the root's job id (so lineage stays flat at
any depth), and schedules a retry to wait in Redis. A delivery is acknowledged only once
its outcome is logged.
"""

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from pydantic import ValidationError
from pymongo.errors import PyMongoError
from taskiq import AsyncBroker, Context, TaskiqMessage

from service.config import Settings
from service.errors import (
    BrokerUnavailableError,
    EnrichmentError,
    InvalidRequestError,
    JobCancelledError,
    JobTimeoutError,
    LogRefusedError,
    StoreUnavailableError,
)
from service.freshness import fresh_answer, fresh_since, mark_fresh
from service.logbook import (
    Decision,
    begin_attempt,
    describe_error,
    forget_queued,
    heartbeat,
    queue_entries,
    record_family,
    storable,
    touch_family,
    write_log,
    write_outcome,
)
from service.metrics import ATTEMPT_SECONDS, DEAD_LETTERS, JOBS
from service.models import JobStatus, LogEntry, WorkerInfo
from service.models.base import utc_now
from service.models.jobs import JobPayload
from service.models.views import DeadLetter
from service.processing import AnySpec, JobRun, Spawn
from service.providers.ratelimit import JOB_TIME_LIMIT
from service.resources import WorkerResources
from service.spawning import (
    ATTEMPT_LABEL,
    child_job_id,
    claim_entities,
    kept_payload,
    kick_job,
    parent_of,
    queued_entry,
    validated_payload,
)
from service.streams import MAX_ATTEMPT_LABEL, Entry, LeasedStreamBroker, Poison, lane_of

logger = logging.getLogger(__name__)
# What a kept child's payload leaves out: its new family's lineage is set when it is spawned.
LINEAGE = {"parent_job_id", "force", "rerun_of"}
FINISH_RETRY_SECONDS = 2.0
REDIS_RETRY_SECONDS = 0.5
MAX_REDIS_RETRY_SECONDS = 5.0
# The `status` a failed attempt that will run again counts under (jobs end in a JobStatus).
RETRYING = "retrying"


@dataclass
class Attempt:
    """One attempt this worker runs: what its log needs besides the processor's report."""

    job_id: str
    number: int
    parent_job_id: str | None
    started: datetime
    clock: float
    queued_at: datetime | None
    message: TaskiqMessage
    payload: JobPayload | None  # None: the payload did not validate (`invalid` says why)
    invalid: str | None = None


class JobRunner:
    """Runs processors for one worker: log every attempt, spawn children, schedule retries."""

    def __init__(self, broker: AsyncBroker, settings: Settings, resources: WorkerResources) -> None:
        self._broker = broker
        self._settings = settings
        self._resources = resources
        self._worker = WorkerInfo(host=socket.gethostname(), pid=os.getpid())
        self._running: set[asyncio.Task[Any]] = set()
        self._attempts: dict[tuple[str, int], Attempt] = {}
        self._background: set[asyncio.Future[Any]] = set()
        # Outcomes kept in memory while the store was down (see `_finish_later`).
        self._unlogged: set[asyncio.Future[Any]] = set()

    def start(self) -> None:
        """Start keeping this worker's attempts alive (heartbeats, leases)."""
        self._spawn_background(self._heartbeats())
        if isinstance(self._broker, LeasedStreamBroker):
            self._spawn_background(self._broker.renew_leases())
            self._broker.on_poison = self.reject

    async def run(self, spec: AnySpec, raw_payload: Any, context: Context) -> None:
        """Handle one delivery of `spec`'s message: run its attempt, or see it is not ours."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await self._deliver(spec, raw_payload, context.message)
        except Exception:  # a bug: the message must not be held (renewed) forever
            logger.exception(
                "delivery of %s failed; retried after a lease", context.message.task_id
            )
            self._release(context.message)
        finally:
            self._running.discard(task)

    async def drain(self, grace_seconds: float) -> None:
        """Let running jobs finish for up to `grace_seconds`, then cancel (and log) the rest.

        Outcomes still waiting for the store get the same grace: each one written then is an
        attempt that will not be recorded as lost and run again.
        """
        started = time.monotonic()
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_seconds)
        if self._unlogged:
            left = max(grace_seconds - (time.monotonic() - started), 0.0)
            await asyncio.wait(set(self._unlogged), timeout=left)
        leftover = set(self._running)
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover)
        for background in set(self._background):
            background.cancel()
        if self._background:
            await asyncio.wait(set(self._background))

    async def reject(self, poison: Poison) -> None:
        """Record a stream entry that cannot run: a failed entry when its job is known."""
        message = poison.message
        if message is not None and message.task_id:
            now = utc_now()
            entry = self._delivery_entry(
                message,
                message.kwargs.get("job"),
                job_type=message.task_name,
                status=JobStatus.FAILED,
                attempt=_attempt_label(message) or 1,
                started_at=now,
                finished_at=now,
                error=describe_error(InvalidRequestError(poison.reason)),
            )
            timeout = self._settings.log_write_timeout_seconds
            await write_log(self._logs, entry, timeout=timeout)
            families = self._resources.store.families
            await touch_family(families, entry.parent_job_id, timeout=timeout)
            known = self._broker.find_task(message.task_name) is not None
            JOBS.labels(message.task_name if known else "unknown", JobStatus.FAILED).inc()
            return
        letter = DeadLetter(
            stream_id=poison.stream_id,
            queue=poison.stream or self._settings.queue_name,
            reason=poison.reason,
            excerpt=poison.excerpt,
            at=utc_now(),
        )
        try:
            await self._resources.store.dead_letters.insert_one(
                storable(letter.model_dump(by_alias=True))
            )
        except PyMongoError as exc:
            raise StoreUnavailableError(f"could not record a dead letter: {exc}") from exc
        DEAD_LETTERS.labels(lane_of(self._settings.queue_name, letter.queue)).inc()

    def _delivery_entry(self, message: TaskiqMessage, raw_payload: Any, **fields: Any) -> LogEntry:
        """An entry for a delivery of `message`, with its lineage and this worker."""
        parent = parent_of(raw_payload)
        payload = validated_payload(message.task_name, raw_payload)
        return LogEntry(
            job_id=message.task_id,
            parent_job_id=parent,
            is_root_job=parent is None,
            worker=self._worker,
            payload=kept_payload(payload),
            rerun_of=payload.rerun_of if payload is not None else None,
            **fields,
        )

    @property
    def _logs(self) -> Any:
        return self._resources.store.logs

    async def _deliver(self, spec: AnySpec, raw_payload: Any, message: TaskiqMessage) -> None:
        # Validated once per delivery: the running entry, the run and the retry all use it.
        try:
            payload: JobPayload | None = spec.payload_model.model_validate(raw_payload)
            invalid = None
        except ValidationError as exc:
            payload, invalid = None, f"invalid {spec.job_type} payload: {_summarise(exc)}"
        begin = await self._begin(spec, raw_payload, payload, message)
        if begin is None:
            return
        if begin.decision in (Decision.DONE, Decision.EXHAUSTED):
            if begin.decision == Decision.EXHAUSTED:  # its last attempt was lost: it failed
                JOBS.labels(spec.job_type, JobStatus.FAILED).inc()
            await self._acknowledge(message)
            return
        if begin.decision == Decision.HELD:
            self._release(message)
            return
        attempt = Attempt(
            message.task_id, begin.attempt, parent_of(raw_payload), utc_now(),
            time.monotonic(), begin.queued_at, message, payload, invalid,
        )  # fmt: skip
        self._attempts[(attempt.job_id, attempt.number)] = attempt
        try:
            await self._attempt(spec, attempt)
        finally:
            self._attempts.pop((attempt.job_id, attempt.number), None)

    async def _begin(
        self,
        spec: AnySpec,
        raw_payload: Any,
        payload: JobPayload | None,
        message: TaskiqMessage,
    ) -> Any:
        now = utc_now()
        running = self._delivery_entry(
            message,
            raw_payload,
            job_type=spec.job_type,
            entity_type=spec.entity_type,
            entity_name=payload.display_name if payload is not None else None,
            status=JobStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
        )
        try:
            return await begin_attempt(
                self._logs,
                job_id=message.task_id,
                first_attempt=_attempt_label(message) or 1,
                max_attempts=self._settings.job_max_attempts,
                lease_seconds=self._settings.job_lease_seconds,
                running=running,
            )
        except StoreUnavailableError as exc:
            # Nothing can be decided without the log: give the message back for later.
            logger.warning("%s: %s", message.task_id, exc)
            await self._give_up(message)
            return None

    async def _attempt(self, spec: AnySpec, attempt: Attempt) -> None:
        run = JobRun(
            attempt.job_id, attempt.number, spec.job_type, spec.entity_type, spec.details_model()
        )
        if attempt.payload is not None:
            run.entity_name = attempt.payload.display_name
        try:
            error = await self._execute(spec, attempt, run)
        except asyncio.CancelledError:
            # Shutdown mid-job: log it, give the message back for redelivery (the next
            # attempt). The write runs as its own task, so a second cancel cannot cut it short.
            cancelled = JobCancelledError("the worker shut down before the job finished")
            entry = self._entry(run, attempt, cancelled)
            write = asyncio.ensure_future(self._write_cancelled(entry, attempt.message))
            with suppress(asyncio.CancelledError):
                await asyncio.shield(write)
            raise
        try:
            await self._finish(run, attempt, error)
        except StoreUnavailableError as exc:
            # The outcome is not logged: keep the message (and its lease) until it is.
            logger.warning("%s: %s; will keep trying", attempt.job_id, exc)
            unlogged = self._spawn_background(self._finish_later(run, attempt, error))
            self._unlogged.add(unlogged)
            unlogged.add_done_callback(self._unlogged.discard)

    async def _execute(
        self, spec: AnySpec, attempt: Attempt, run: JobRun[Any]
    ) -> BaseException | None:
        payload = attempt.payload
        if payload is None:
            return InvalidRequestError(attempt.invalid or f"invalid {spec.job_type} payload")
        try:
            if await self._fresh(spec, payload, run):
                await self._spawn_children(run, payload)
                return None
            await self._run_processor(spec, payload, run)
            if run.status != JobStatus.FAILED:
                await self._spawn_children(run, payload)
                # Only once its children are out: a retry after a failed spawn must run.
                if spec.remembers:
                    await self._mark_fresh(payload, run)
        except TimeoutError:
            limit = self._settings.job_timeout_seconds
            return JobTimeoutError(
                f"{spec.job_type} exceeded its {limit:g}s time limit (its own work, not "
                "the time it waited for a provider's budget)"
            )
        except EnrichmentError as exc:
            return exc
        except Exception as exc:  # a bug: record it, do not retry it
            logger.exception("%s %s crashed", spec.job_type, run.job_id)
            return exc
        return None

    async def _run_processor(self, spec: AnySpec, payload: JobPayload, run: JobRun[Any]) -> None:
        """The processor, under the job's time limit (which budget waits move on)."""
        with anyio.fail_after(self._settings.job_timeout_seconds) as scope:
            token = JOB_TIME_LIMIT.set(scope)
            try:
                await spec.processor(payload, run, self._resources.providers)
            finally:
                JOB_TIME_LIMIT.reset(token)

    async def _fresh(self, spec: AnySpec, payload: JobPayload, run: JobRun[Any]) -> bool:
        """Whether the entity is fresh for this processor (then the run relies on that)."""
        days = self._settings.enrich_fresh_days
        if payload.force or days <= 0 or not spec.remembers:
            return False
        since = fresh_since(utc_now(), days)
        freshness = self._resources.store.freshness
        fresh = await fresh_answer(freshness, spec.job_type, payload.entity_key, since=since)
        # Its own mark (a retry of a job whose outcome could not be logged) is no answer.
        if fresh is None or fresh.relied_on.job_id == run.job_id:
            return False
        run.status, run.relied_on = JobStatus.SKIPPED, fresh.relied_on
        # The same children again: each checks its own freshness (a failed one runs again).
        run.spawns = [spawn for spawn in map(_respawn, fresh.spawns) if spawn is not None]
        return True

    async def _mark_fresh(self, payload: JobPayload, run: JobRun[Any]) -> None:
        """Record the answer under the entity as requested and as resolved."""
        keys = [payload.entity_key]
        if run.entity_id:
            keys.append(f"{run.entity_type}:{run.entity_id}")
        spawns = [
            (s.job_type, s.payload.model_dump(mode="json", by_alias=True, exclude=LINEAGE))
            for s in run.spawns
        ]
        try:
            await mark_fresh(
                self._resources.store.freshness,
                run.job_type,
                keys,
                job_id=run.job_id,
                at=utc_now(),
                spawns=spawns,
            )
        except StoreUnavailableError as exc:
            # The work is done and its children are out: failing the job now would ask the
            # provider again. An unmarked answer costs at most one request later.
            logger.warning("%s: not marked fresh: %s", run.job_id, exc)

    async def _spawn_children(self, run: JobRun[Any], parent: JobPayload) -> None:
        root_id = parent.parent_job_id or run.job_id
        wanted = [
            (child_job_id(run.job_id, index, spawn.job_type), spawn)
            for index, spawn in enumerate(run.spawns)
        ]
        # A child whose entity this family already runs (another job holds the claim) is not
        # spawned again.
        claimed = await claim_entities(self._resources.store.claims, root_id, wanted)
        children: list[tuple[str, str, JobPayload]] = []
        for child_id, spawn in wanted:
            if child_id not in claimed:
                continue
            # A forced refresh refreshes the whole family, not only its root.
            lineage = {"parent_job_id": root_id, "force": parent.force or spawn.payload.force}
            payload = spawn.payload.model_copy(update=lineage)
            children.append((child_id, spawn.job_type, payload))
        if children:  # the family's record first: no child's log exists without it
            await record_family(
                self._resources.store.families,
                root_id,
                timeout=self._settings.log_write_timeout_seconds,
            )
        # Every child is on the timeline (queued) before the first is sent: one bulk write.
        await queue_entries(
            self._logs,
            [queued_entry(job_id, job_type, payload) for job_id, job_type, payload in children],
            timeout=self._settings.log_write_timeout_seconds,
        )
        for sent, (child_id, job_type, payload) in enumerate(children):
            try:
                await kick_job(
                    self._broker, job_type, child_id, payload.model_dump(mode="json", by_alias=True)
                )
            except BrokerUnavailableError:
                # Unsent children must not wait on the timeline for a message that never
                # comes: this attempt fails (retryable) and its retry queues them again.
                unsent = [job_id for job_id, _, _ in children[sent:]]
                await forget_queued(self._logs, unsent)
                raise
            run.spawned_job_ids.append(child_id)

    def _entry(self, run: JobRun[Any], attempt: Attempt, error: BaseException | None) -> LogEntry:
        return LogEntry(
            job_id=run.job_id,
            parent_job_id=attempt.parent_job_id,
            is_root_job=attempt.parent_job_id is None,
            job_type=run.job_type,
            entity_type=run.entity_type,
            entity_id=run.entity_id,
            entity_name=run.entity_name,
            status=JobStatus.FAILED if error is not None else run.status,
            attempt=attempt.number,
            queued_at=attempt.queued_at,
            started_at=attempt.started,
            finished_at=utc_now(),
            duration_ms=round((time.monotonic() - attempt.clock) * 1000),
            error=describe_error(error) if error is not None else None,
            fields_enriched=run.fields_enriched,
            spawned_job_ids=run.spawned_job_ids,
            details=run.details,
            worker=self._worker,
            relied_on=run.relied_on,
            payload=kept_payload(attempt.payload),
            rerun_of=attempt.payload.rerun_of if attempt.payload is not None else None,
        )

    async def _finish(
        self, run: JobRun[Any], attempt: Attempt, error: BaseException | None
    ) -> None:
        timeout = self._settings.log_write_timeout_seconds
        entry = self._entry(run, attempt, error)
        try:
            held = await write_outcome(self._logs, entry, timeout=timeout)
        except LogRefusedError as refused:
            # Never unlogged: the attempt is recorded without what the store refused.
            error = refused
            bare = entry.model_copy(
                update={"status": JobStatus.FAILED, "error": describe_error(refused),
                        "details": {}, "fields_enriched": []}
            )  # fmt: skip
            held = await write_outcome(self._logs, bare, timeout=timeout)
        if not held:
            # Another worker took this attempt over (this one went silent past its lease):
            # its outcome stands; this stale one is dropped and the message left to it.
            logger.warning("%s attempt %d was taken over", attempt.job_id, attempt.number)
            self._release(attempt.message)
            return
        retryable = error is not None and describe_error(error).retryable
        if retryable and attempt.number < self._settings.job_max_attempts:
            await self._schedule_retry(attempt)
            outcome: str = RETRYING
        else:
            await self._acknowledge(attempt.message)
            outcome = JobStatus.FAILED if error is not None else run.status
        # Counted once its outcome is logged and its message dealt with: a step that fails
        # before this runs `_finish` again, which must not count it twice.
        JOBS.labels(run.job_type, outcome).inc()
        ATTEMPT_SECONDS.labels(run.job_type).observe((entry.duration_ms or 0) / 1000)

    async def _finish_later(
        self, run: JobRun[Any], attempt: Attempt, error: BaseException | None
    ) -> None:
        self._attempts[(attempt.job_id, attempt.number)] = attempt  # still alive: heartbeats
        try:
            while True:
                await asyncio.sleep(FINISH_RETRY_SECONDS)
                try:
                    await self._finish(run, attempt, error)
                except StoreUnavailableError as exc:
                    logger.warning("%s: %s; still trying", attempt.job_id, exc)
                else:
                    logger.info("%s: outcome logged after a store outage", attempt.job_id)
                    return
        finally:
            self._attempts.pop((attempt.job_id, attempt.number), None)

    async def _schedule_retry(self, attempt: Attempt) -> None:
        # Not taskiq's SmartRetryMiddleware: it re-kicks after the task returned (after our
        # manual ack) and RedisStreamBroker ignores its `delay` label; its schedule sources
        # need a scheduler process of their own. A retry waits in Redis (a due-time set any
        # worker releases), on the timeline as `queued`, and holds no worker slot.
        jitter = random.uniform(0, self._settings.job_retry_delay_seconds)  # noqa: S311 - not crypto
        delay = self._settings.retry_delay(attempt.number) + jitter
        message = attempt.message
        labels = {**message.labels, ATTEMPT_LABEL: attempt.number + 1}
        retry = queued_entry(
            message.task_id,
            message.task_name,
            attempt.payload,
            raw_payload=message.kwargs.get("job", {}),
            attempt=attempt.number + 1,
            due_at=utc_now() + timedelta(seconds=delay),
        )
        timeout = self._settings.log_write_timeout_seconds
        await queue_entries(self._logs, [retry], timeout=timeout)
        logger.info("retrying %s in %.1fs (attempt %d)", message.task_id, delay, retry.attempt)
        held = self._held(message)
        if held is not None:
            broker, entry = held
            delayed = message.model_copy(update={"labels": labels})
            await self._until_redis(
                message, lambda: broker.schedule_retry(delayed, time.time() + delay, entry)
            )
            return
        # The in-process broker (the demo without Redis) has no stream to wait in.
        self._spawn_background(self._kick_later(message, labels, delay))

    async def _kick_later(
        self, message: TaskiqMessage, labels: dict[str, Any], delay: float
    ) -> None:
        await asyncio.sleep(delay)
        await kick_job(
            self._broker, message.task_name, message.task_id, message.kwargs["job"], labels
        )

    def _held(self, message: TaskiqMessage) -> tuple[LeasedStreamBroker, Entry] | None:
        """The stream broker and entry a delivery came from (None: the in-process broker)."""
        if isinstance(self._broker, LeasedStreamBroker):
            entry = self._broker.entry_of(message)
            if entry is not None:
                return self._broker, entry
        return None

    async def _acknowledge(self, message: TaskiqMessage) -> None:
        held = self._held(message)
        if held is not None:
            broker, entry = held
            await self._until_redis(message, lambda: broker.acknowledge(entry))

    async def _until_redis(
        self, message: TaskiqMessage, action: Callable[[], Awaitable[None]]
    ) -> None:
        """Do a Redis step now, or keep trying in the background once Redis is back.

        The message stays held meanwhile (its lease renewed when Redis answers), so no other
        worker takes it; if this worker stops first, the redelivery finds the log says done.
        """
        try:
            await action()
        except BrokerUnavailableError as exc:
            logger.warning("%s: %s; will keep trying", message.task_id, exc)
            self._spawn_background(self._retry_redis(message, action))

    async def _retry_redis(
        self, message: TaskiqMessage, action: Callable[[], Awaitable[None]]
    ) -> None:
        wait = REDIS_RETRY_SECONDS
        while True:
            await asyncio.sleep(wait)
            try:
                await action()
            except BrokerUnavailableError:
                wait = min(wait * 2, MAX_REDIS_RETRY_SECONDS)
            else:
                logger.info("%s: done after Redis came back", message.task_id)
                return

    def _release(self, message: TaskiqMessage) -> None:
        held = self._held(message)
        if held is not None:
            broker, entry = held
            broker.release(entry)

    async def _give_up(self, message: TaskiqMessage) -> None:
        held = self._held(message)
        if held is not None:
            broker, entry = held
            await broker.abandon(entry)

    async def _write_cancelled(self, entry: LogEntry, message: TaskiqMessage) -> None:
        try:
            timeout = self._settings.log_write_timeout_seconds
            await write_outcome(self._logs, entry, timeout=timeout)
        finally:
            await self._give_up(message)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            try:
                await heartbeat(self._logs, list(self._attempts), self._worker)
            except PyMongoError as exc:  # the store is away; the Redis lease still holds
                logger.warning("heartbeat not recorded: %s", exc)

    def _spawn_background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A loop that stops (heartbeats, leases) must say so, not fall silent.
            logger.error("background task %s failed", task, exc_info=task.exception())


def _respawn(kept: tuple[str, dict[str, Any]]) -> Spawn | None:
    """A child kept with a freshness mark, as a spawn again (None if it no longer fits)."""
    from service.registry import JOBS  # the registry imports the processors, which import this

    job_type, raw = kept
    spec = JOBS.get(job_type)
    if spec is None:
        return None
    try:
        return Spawn(job_type, spec.payload_model.model_validate(raw))
    except ValidationError:
        return None


def _attempt_label(message: TaskiqMessage) -> int | None:
    value = message.labels.get(ATTEMPT_LABEL)
    if not (isinstance(value, int | str) and str(value).isdecimal()):
        return None
    return int(value) if 1 <= int(value) <= MAX_ATTEMPT_LABEL else None


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}" for err in exc.errors()
    )
