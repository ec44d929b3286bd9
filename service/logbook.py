"""The job log: one `EnrichmentLog` document per attempt, moving through its states.

`queued` (kicked, spawned, or a retry waiting for its due time) → `running` (a worker holds
it and renews its heartbeat) → `success` | `failed` | `skipped`. Every write is keyed on
(jobId, attempt), so a redelivery never overwrites an earlier attempt: it decides, from
what the log says, which attempt it is (`begin_attempt`).
"""

import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from bson.errors import BSONError
from pymongo import DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from service.errors import (
    EnrichmentError,
    LogRefusedError,
    StoreUnavailableError,
    WorkerLostError,
)
from service.executors import Record
from service.models import JobError, JobStatus, LogEntry, WorkerInfo
from service.models.base import utc_now
from service.redaction import redact

logger = logging.getLogger(__name__)

# Stored text is bounded: an error message, and any one string in the details.
MAX_ERROR_CHARS = 2_000
MAX_DETAIL_CHARS = 4_000
MAX_DETAIL_ITEMS = 200
LOST = WorkerLostError.__name__
# Where provider text and error messages live: a provider may echo a secret into any of them.
# Lineage ids, statuses and times outside these are never redacted (a job id that happened to
# contain 8 characters of a token must still find its document); ids inside `details` are.
FREE_TEXT = frozenset({"details", "error", "entityName", "reason", "excerpt"})


def describe_error(exc: BaseException) -> JobError:
    """The stored form of an exception: its type, message and whether a retry may help."""
    retryable = isinstance(exc, EnrichmentError) and exc.retryable
    message = _bounded(redact(str(exc) or repr(exc)), MAX_ERROR_CHARS)
    return JobError(type=type(exc).__name__, message=message, retryable=retryable)


def storable(document: Any, *, free_text: bool = False) -> Any:
    """Every string valid UTF-8 and bounded, lists bounded, free text redacted: storable."""
    if isinstance(document, str):
        text = document.encode("utf-8", "replace").decode("utf-8")
        return _bounded(redact(text) if free_text else text, MAX_DETAIL_CHARS)
    if isinstance(document, dict):
        return {
            storable(key): storable(value, free_text=free_text or key in FREE_TEXT)
            for key, value in document.items()
        }
    if isinstance(document, list | tuple):
        return [storable(value, free_text=free_text) for value in document[:MAX_DETAIL_ITEMS]]
    return document


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def entry_document(entry: LogEntry) -> Record:
    """The stored form of an entry."""
    document: Record = storable(entry.model_dump(mode="python", by_alias=True))
    return document


class Decision(Enum):
    """What a delivery of a job message should do."""

    RUN = "run"  # run `attempt`
    DONE = "done"  # the job already finished this delivery's work: acknowledge it
    HELD = "held"  # a live worker holds it: leave it alone
    EXHAUSTED = "exhausted"  # no attempts left (the last one was lost): acknowledge it


@dataclass(frozen=True)
class Begin:
    """The outcome of `begin_attempt`."""

    decision: Decision
    attempt: int = 0
    queued_at: datetime | None = None


async def write_log(logs: AsyncCollection[Record], entry: LogEntry, *, timeout: float) -> None:
    """Upsert one attempt's log on (jobId, attempt), retrying while the store is unreachable."""
    document = entry_document(entry)
    where = {"jobId": document["jobId"], "attempt": entry.attempt}
    await _retrying(
        timeout,
        f"the log of {document['jobId']}",
        lambda: logs.replace_one(where, document, upsert=True),
    )


async def write_outcome(logs: AsyncCollection[Record], entry: LogEntry, *, timeout: float) -> bool:
    """Record how a running attempt ended, if this worker still holds it.

    False when another worker took it over meanwhile (this worker went silent past its
    lease and the attempt was recorded as lost): the stale outcome is not written.
    """
    document = entry_document(entry)
    worker = document.get("worker") or {}
    holder = {
        "jobId": document["jobId"],
        "attempt": entry.attempt,
        "status": JobStatus.RUNNING.value,
        "worker.host": worker.get("host"),
        "worker.pid": worker.get("pid"),
    }
    written: list[int] = []

    async def replace() -> None:
        result = await logs.replace_one(holder, document)
        written.append(result.matched_count)

    await _retrying(timeout, f"the log of {document['jobId']}", replace)
    return bool(written and written[-1])


async def queue_entries(
    logs: AsyncCollection[Record], entries: list[LogEntry], *, timeout: float
) -> None:
    """Record queued attempts (one bulk write); an attempt already logged is left alone."""
    if not entries:
        return
    writes = [
        UpdateOne(
            {"jobId": entry.job_id, "attempt": entry.attempt},
            {"$setOnInsert": entry_document(entry)},
            upsert=True,
        )
        for entry in entries
    ]
    await _retrying(timeout, "queued entries", lambda: logs.bulk_write(writes, ordered=False))


async def record_family(families: AsyncCollection[Record], root_id: str, *, timeout: float) -> None:
    """Record that `root_id` has a family, before its children's queued entries are written.

    One small document per root (later spawns find it there, and write nothing): a root
    whose log is deleted by hand leaves it behind, so the Orphans view finds that family
    from these records and the roots' logs, never by reading every child's entry. Written
    like the entries it precedes: a store blip is ridden over, not a failed attempt.
    """

    async def upsert() -> None:
        with suppress(DuplicateKeyError):  # two parents raced to record it: it is recorded
            await families.update_one(
                {"_id": root_id}, {"$setOnInsert": {"since": utc_now()}}, upsert=True
            )

    await _retrying(timeout, f"the family record of {root_id}", upsert)


async def touch_family(
    families: AsyncCollection[Record], root_id: str | None, *, timeout: float
) -> None:
    """Say that a family changed where its count of entries does not show it.

    The one write that may overwrite a finished entry (a poison message's failed entry on
    an attempt that exists) makes a roll-up kept in the family's record stale
    (`service.queries`): bumping the record's version retires it.
    """
    if not root_id:
        return

    async def bump() -> None:
        await families.update_one({"_id": root_id}, {"$inc": {"version": 1}})

    await _retrying(timeout, f"the family record of {root_id}", bump)


async def forget_queued(logs: AsyncCollection[Record], job_ids: list[str]) -> None:
    """Remove the queued entries of jobs whose message was never sent (best effort)."""
    if not job_ids:
        return
    try:
        await logs.delete_many(
            {"jobId": {"$in": job_ids}, "attempt": 1, "status": JobStatus.QUEUED.value}
        )
    except PyMongoError as exc:
        logger.warning("could not remove %d unsent queued entries: %s", len(job_ids), exc)


async def heartbeat(
    logs: AsyncCollection[Record], running: list[tuple[str, int]], worker: WorkerInfo
) -> None:
    """Record that these attempts' worker is alive: one small write for all of them."""
    if not running:
        return
    holders = [{"jobId": job_id, "attempt": attempt} for job_id, attempt in running]
    await logs.update_many(
        {"$or": holders, "status": JobStatus.RUNNING.value, "worker.pid": worker.pid},
        {"$set": {"heartbeatAt": utc_now()}},
    )


async def begin_attempt(
    logs: AsyncCollection[Record],
    *,
    job_id: str,
    first_attempt: int,
    max_attempts: int,
    lease_seconds: float,
    running: LogEntry,
) -> Begin:
    """Decide what a delivery of `job_id`'s message does; mark the attempt it runs `running`.

    The message was made for `first_attempt`; `running` holds the running entry's fields.
    The log is the judge: a queued attempt is claimed; a running one whose worker went
    silent for a lease is recorded as lost and the next attempt starts; a finished one means
    an earlier delivery did the work. Claims are conditional writes, so two deliveries of
    one message cannot both run it.
    """
    try:
        for _ in range(5):  # a lost race re-reads the log
            latest = await logs.find_one(
                {"jobId": job_id, "attempt": {"$gte": first_attempt}},
                sort=[("attempt", DESCENDING)],
            )
            begin = await _decide(logs, latest, job_id, first_attempt, max_attempts,
                                  lease_seconds, running)  # fmt: skip
            if begin is not None:
                return begin
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not begin {job_id}: {exc}") from exc
    raise StoreUnavailableError(f"could not begin {job_id}: the log keeps changing")


async def _decide(
    logs: AsyncCollection[Record],
    latest: Record | None,
    job_id: str,
    first_attempt: int,
    max_attempts: int,
    lease_seconds: float,
    running: LogEntry,
) -> Begin | None:
    if latest is None:
        return await _start(logs, running, first_attempt, None)
    entry = LogEntry.model_validate(latest)
    if entry.status == JobStatus.QUEUED:
        return await _claim(logs, entry, running)
    if entry.status == JobStatus.RUNNING:
        alive = entry.heartbeat_at or entry.started_at
        if alive is not None and utc_now() - alive < timedelta(seconds=lease_seconds):
            return Begin(Decision.HELD)
        if not await _mark_lost(logs, entry, max_attempts):
            return None
        entry = entry.model_copy(update={"status": JobStatus.FAILED, "error": _lost(entry)})
    if entry.status == JobStatus.FAILED and entry.error is not None and entry.error.retryable:
        # Lost, cancelled, or failed with its retry never recorded (the store went away
        # between the two writes): this delivery is the next attempt, if one is left.
        if entry.attempt >= max_attempts:
            return Begin(Decision.EXHAUSTED)
        return await _start(logs, running, entry.attempt + 1, None)
    return Begin(Decision.DONE)


async def _start(
    logs: AsyncCollection[Record], running: LogEntry, attempt: int, queued_at: datetime | None
) -> Begin | None:
    entry = running.model_copy(update={"attempt": attempt, "queued_at": queued_at})
    try:
        await logs.insert_one(entry_document(entry))
    except DuplicateKeyError:
        return None  # another delivery started this attempt first
    return Begin(Decision.RUN, attempt, queued_at)


async def _claim(
    logs: AsyncCollection[Record], queued: LogEntry, running: LogEntry
) -> Begin | None:
    fields = {
        key: value
        for key, value in entry_document(running).items()
        if key in ("status", "startedAt", "worker", "heartbeatAt", "isRootJob", "parentJobId")
    }
    claimed = await logs.update_one(
        {"jobId": queued.job_id, "attempt": queued.attempt, "status": JobStatus.QUEUED.value},
        {"$set": fields},
    )
    if claimed.modified_count != 1:
        return None
    return Begin(Decision.RUN, queued.attempt, queued.queued_at)


def _lost(entry: LogEntry) -> JobError:
    worker = entry.worker
    holder = f"{worker.host}:{worker.pid}" if worker else "its worker"
    alive = entry.heartbeat_at or entry.started_at
    since = f" (last alive {alive:%H:%M:%S} UTC)" if alive else ""
    return JobError(
        type=LOST,
        message=f"{holder} stopped renewing its lease{since}",
        retryable=True,
        lost_worker=worker,
        last_alive_at=alive,
    )


async def _mark_lost(logs: AsyncCollection[Record], entry: LogEntry, max_attempts: int) -> bool:
    error = _lost(entry)
    if entry.attempt >= max_attempts:
        earlier = await logs.count_documents({"jobId": entry.job_id, "error.type": LOST})
        error.message += (
            f"; worker lost {earlier + 1} time(s), no attempts left ({max_attempts} used)"
        )
    now = utc_now()
    started = entry.started_at or now
    result = await logs.update_one(
        {
            "jobId": entry.job_id,
            "attempt": entry.attempt,
            "status": JobStatus.RUNNING.value,
            "heartbeatAt": entry_document(entry).get("heartbeatAt"),
        },
        {
            "$set": {
                "status": JobStatus.FAILED.value,
                "error": error.model_dump(mode="python", by_alias=True),
                "finishedAt": now,
                "durationMs": round((now - started).total_seconds() * 1000),
            }
        },
    )
    if result.modified_count == 1:
        logger.warning("%s attempt %d: %s", entry.job_id, entry.attempt, error.message)
    return result.modified_count == 1


async def _retrying(timeout: float, what: str, write: Any) -> None:
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(ConnectionFailure),
        stop=stop_after_delay(timeout),
        wait=wait_random_exponential(multiplier=0.2, max=5),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                await write()
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not write {what}: {exc}") from exc
    except (PyMongoError, BSONError) as exc:  # not a blip: retrying would not help
        raise LogRefusedError(f"the store refused {what}: {exc}") from exc
