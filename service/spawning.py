"""Spawning jobs: the message a kick sends, child ids, and the family's per-entity claims."""

import uuid
from contextlib import suppress
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError
from redis.exceptions import RedisError
from taskiq import AsyncBroker
from taskiq.exceptions import SendTaskError
from taskiq.kicker import AsyncKicker

from service.errors import BrokerUnavailableError, StoreUnavailableError
from service.executors import Record
from service.models import JobStatus, LogEntry
from service.models.base import utc_now
from service.models.jobs import JobPayload
from service.processing import Spawn

# Child job ids are derived from the parent's id, so a redelivered parent re-kicks the
# same children and their logs upsert onto the same entries instead of doubling.
CHILD_ID_NAMESPACE = uuid.UUID("6f0c1c36-2f7a-4c55-9a0e-0d1b6a1e8f31")
ATTEMPT_LABEL = "attempt"
TASK_LABELS: dict[str, Any] = {"ack_type": "manual"}


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
    except (RedisError, OSError, SendTaskError) as exc:
        raise BrokerUnavailableError(f"could not send {job_type} job {job_id}: {exc}") from exc


def child_job_id(parent_job_id: str, index: int, job_type: str) -> str:
    """The deterministic id of a job's `index`-th child."""
    return uuid.uuid5(CHILD_ID_NAMESPACE, f"{parent_job_id}/{index}/{job_type}").hex


async def claim_entity(
    claims: AsyncCollection[Record], root_id: str, spawn: Spawn, child_id: str
) -> bool:
    """Claim (root, processor, entity) for a child; False when another job holds the claim."""
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


def queued_entry(
    job_id: str,
    job_type: str,
    payload: JobPayload | None,
    *,
    raw_payload: dict[str, Any] | None = None,
    attempt: int = 1,
    due_at: datetime | None = None,
) -> LogEntry:
    """The `queued` log entry of a job just kicked or spawned, or of a retry due later."""
    from service.registry import JOBS  # the registry imports the processors, which import this

    spec = JOBS.get(job_type)
    if payload is None and spec is not None and raw_payload is not None:
        with suppress(ValidationError):
            payload = spec.payload_model.model_validate(raw_payload)
    parent = payload.parent_job_id if payload is not None else parent_of(raw_payload)
    now = utc_now()
    return LogEntry(
        job_id=job_id,
        parent_job_id=parent,
        is_root_job=parent is None,
        job_type=job_type,
        entity_type=spec.entity_type if spec is not None else None,
        entity_name=payload.display_name if payload is not None else None,
        status=JobStatus.QUEUED,
        attempt=attempt,
        queued_at=now,
        started_at=now,
        due_at=due_at,
    )


def parent_of(raw_payload: Any) -> str | None:
    """The root a raw payload names as its parent, if any (a root names none)."""
    if isinstance(raw_payload, dict):
        parent = raw_payload.get("parentJobId", raw_payload.get("parent_job_id"))
        return parent if isinstance(parent, str) and parent else None
    return None
