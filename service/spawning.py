"""Spawning jobs: the message a kick sends, child ids, and the family's per-entity claims."""

import uuid
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError
from redis.exceptions import RedisError
from taskiq import AsyncBroker
from taskiq.kicker import AsyncKicker

from service.errors import BrokerUnavailableError, StoreUnavailableError
from service.executors import Record
from service.models.base import utc_now
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
    except (RedisError, OSError) as exc:
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
