"""Writing the log: one `EnrichmentLog` document per attempt, upserted on (jobId, attempt)."""

from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from service.errors import EnrichmentError, StoreUnavailableError
from service.executors import Record
from service.models import JobError, JobStatus, LogEntry, WorkerInfo
from service.models.base import utc_now
from service.processing import JobRun


def describe_error(exc: BaseException) -> JobError:
    """The stored form of an exception: its type, message and whether a retry may help."""
    retryable = isinstance(exc, EnrichmentError) and exc.retryable
    return JobError(type=type(exc).__name__, message=str(exc) or repr(exc), retryable=retryable)


def log_entry(
    run: JobRun[Any],
    *,
    parent_job_id: str | None,
    started: datetime,
    duration_ms: int,
    error: BaseException | None,
    worker: WorkerInfo,
) -> LogEntry:
    """The log of one finished (or failed) attempt."""
    return LogEntry(
        job_id=run.job_id,
        parent_job_id=parent_job_id,
        is_root_job=parent_job_id is None,
        job_type=run.job_type,
        entity_type=run.entity_type,
        entity_id=run.entity_id,
        entity_name=run.entity_name,
        status=JobStatus.FAILED if error is not None else run.status,
        attempt=run.attempt,
        started_at=started,
        finished_at=utc_now(),
        duration_ms=duration_ms,
        error=describe_error(error) if error is not None else None,
        fields_enriched=run.fields_enriched,
        spawned_job_ids=run.spawned_job_ids,
        details=run.details,
        worker=worker,
    )


async def write_log(logs: AsyncCollection[Record], entry: LogEntry, *, timeout: float) -> None:
    """Upsert one attempt's log on (jobId, attempt), retrying while the store is unreachable."""
    document = entry.model_dump(mode="python", by_alias=True)
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(ConnectionFailure),
        stop=stop_after_delay(timeout),
        wait=wait_random_exponential(multiplier=0.2, max=5),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                await logs.replace_one(
                    {"jobId": entry.job_id, "attempt": entry.attempt}, document, upsert=True
                )
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not write the log of {entry.job_id}: {exc}") from exc
