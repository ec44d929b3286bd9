"""Spawning jobs: the message a kick sends, child ids, and the family's per-entity claims."""

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, ConnectionFailure
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
from service.store import chunks

# Child job ids are derived from the parent's id, so a redelivered parent re-kicks the
# same children and their logs upsert onto the same entries instead of doubling.
CHILD_ID_NAMESPACE = uuid.UUID("6f0c1c36-2f7a-4c55-9a0e-0d1b6a1e8f31")
ATTEMPT_LABEL = "attempt"
TASK_LABELS: dict[str, Any] = {"ack_type": "manual"}
# A job's input is kept on its entries (for re-runs) up to this size: a library's album list
# is not, lest every read of its root carry megabytes.
PAYLOAD_KEEP_BYTES = 8_192


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


async def claim_entities(
    claims: AsyncCollection[Record], root_id: str, children: list[tuple[str, Spawn]]
) -> set[str]:
    """Claim (root, processor, entity) for each (child id, spawn); return the ids that hold one.

    One unordered bulk insert on a unique `_id`: atomic per claim, so two parents racing
    cannot both win, and a library's ten thousand albums cost one round trip, not 10,000.
    """
    wanted = {f"{root_id}/{spawn.job_type}/{spawn.payload.entity_key}": child_id
              for child_id, spawn in reversed(children)}  # fmt: skip
    now = utc_now()
    documents = [
        {"_id": claim, "jobId": child, "claimedAt": now} for claim, child in wanted.items()
    ]
    if not documents:
        return set()
    try:
        await claims.insert_many(documents, ordered=False)
        return set(wanted.values())
    except BulkWriteError as exc:
        taken = [wanted[error["op"]["_id"]] for error in exc.details["writeErrors"]]
        held = await _holders(claims, [error["op"]["_id"] for error in exc.details["writeErrors"]])
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not claim {len(documents)} entities: {exc}") from exc
    # The same child again (its parent was redelivered) still holds its claim: kick it again.
    return (set(wanted.values()) - set(taken)) | {child for child in taken if child in held}


async def _holders(claims: AsyncCollection[Record], claim_ids: list[str]) -> set[str]:
    """The job ids holding these claims."""
    holders: set[str] = set()
    try:
        for chunk in chunks(claim_ids):
            holders |= {doc["jobId"] async for doc in claims.find({"_id": {"$in": chunk}})}
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not read {len(claim_ids)} claims: {exc}") from exc
    return holders


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
    payload = payload or validated_payload(job_type, raw_payload)
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
        payload=kept_payload(payload),
        rerun_of=payload.rerun_of if payload is not None else None,
    )


def validated_payload(job_type: str, raw_payload: Any) -> JobPayload | None:
    """`raw_payload` as its job type's payload model, or None (unknown type, invalid)."""
    from service.registry import JOBS  # the registry imports the processors, which import this

    spec = JOBS.get(job_type)
    if spec is None or raw_payload is None:
        return None
    try:
        payload: JobPayload = spec.payload_model.model_validate(raw_payload)
    except ValidationError:
        return None
    return payload


def kept_payload(payload: JobPayload | None) -> dict[str, Any] | None:
    """A job's input as its entries keep it (what a re-run sends again), if small enough."""
    if payload is None:
        return None
    kept = payload.model_dump(mode="json", by_alias=True, exclude_none=True)
    return kept if len(json.dumps(kept)) <= PAYLOAD_KEEP_BYTES else None


def parent_of(raw_payload: Any) -> str | None:
    """The root a raw payload names as its parent, if any (a root names none)."""
    if isinstance(raw_payload, dict):
        parent = raw_payload.get("parentJobId", raw_payload.get("parent_job_id"))
        return parent if isinstance(parent, str) and parent else None
    return None
