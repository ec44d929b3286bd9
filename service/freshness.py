"""Never ask a provider twice for what we know: what each processor last learned, and when.

A job that finished with an answer (success, or a definite skip such as "no match") marks its
entity fresh for its processor, under every key the entity goes by (as requested, and as
resolved: a title and its MBID). For `ENRICH_FRESH_DAYS` a later job of that processor for
that entity, in any family, is not run: it is logged `skipped` and names the job it relied on.
A kick with `force` runs anyway (and its children too).

A skipped job still spawns the children the job it relies on spawned (kept with the mark):
each of them checks its own freshness, so a child that failed back then (a cover download)
runs again, while the ones that succeeded are skipped without a request.

One small document per (processor, key): `_id` is `<jobType>/<key>`, so the check is one
lookup by `_id` and the mark one upsert per key. The children's payloads are kept exactly as
their job messages carry them (an image URL with its query): this collection is working
state, never shown.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure

from service.errors import StoreUnavailableError
from service.executors import Record
from service.models.logs import ReliedOn


def _id(job_type: str, key: str) -> str:
    return f"{job_type}/{key}"


@dataclass(frozen=True)
class Fresh:
    """A fresh answer: the job it came from, and the children that job spawned."""

    relied_on: ReliedOn
    spawns: list[tuple[str, dict[str, Any]]]


async def fresh_answer(
    freshness: AsyncCollection[Record], job_type: str, key: str, *, since: datetime
) -> Fresh | None:
    """The fresh answer to rely on instead of running, or None when there is none."""
    try:
        found = await freshness.find_one({"_id": _id(job_type, key), "at": {"$gte": since}})
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not read freshness of {key}: {exc}") from exc
    if found is None:
        return None
    spawns = [(spawn["jobType"], spawn["payload"]) for spawn in found.get("spawns", [])]
    return Fresh(ReliedOn(job_id=found["jobId"], enriched_at=found["at"]), spawns)


async def mark_fresh(
    freshness: AsyncCollection[Record],
    job_type: str,
    keys: list[str],
    *,
    job_id: str,
    at: datetime,
    spawns: list[tuple[str, dict[str, Any]]],
) -> None:
    """Record that `job_id` answered for these keys at `at`, and which children it spawned."""
    mark = {
        "jobId": job_id,
        "at": at,
        "spawns": [{"jobType": job_type, "payload": payload} for job_type, payload in spawns],
    }
    writes = [
        UpdateOne({"_id": _id(job_type, key)}, {"$set": mark}, upsert=True)
        for key in dict.fromkeys(keys)
    ]
    if not writes:
        return
    try:
        await freshness.bulk_write(writes, ordered=False)
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not mark {keys[0]} fresh: {exc}") from exc


def fresh_since(now: datetime, days: float) -> datetime:
    """The oldest answer still fresh."""
    return now - timedelta(days=days)
