"""Never ask a provider twice for what we know: what each processor last learned, and when.

A job that finished with an answer (success, or a definite skip such as "no match") marks its
entity fresh for its processor, under every key the entity goes by (as requested, and as
resolved: a title and its MBID). For `ENRICH_FRESH_DAYS` a later job of that processor for
that entity, in any family, is not run: it is logged `skipped` and names the job it relied on.
A kick with `force` runs anyway (and its children too).

One small document per (processor, key): `_id` is `<jobType>/<key>`, so the check is one
lookup by `_id` and the mark one upsert per key.
"""

from datetime import datetime, timedelta

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure

from service.errors import StoreUnavailableError
from service.executors import Record
from service.models.logs import ReliedOn


def _id(job_type: str, key: str) -> str:
    return f"{job_type}/{key}"


async def relied_on(
    freshness: AsyncCollection[Record], job_type: str, key: str, *, since: datetime
) -> ReliedOn | None:
    """The fresh answer to rely on instead of running, or None when there is none."""
    try:
        found = await freshness.find_one({"_id": _id(job_type, key), "at": {"$gte": since}})
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"could not read freshness of {key}: {exc}") from exc
    if found is None:
        return None
    return ReliedOn(job_id=found["jobId"], enriched_at=found["at"])


async def mark_fresh(
    freshness: AsyncCollection[Record],
    job_type: str,
    keys: list[str],
    *,
    job_id: str,
    at: datetime,
) -> None:
    """Record that `job_id` answered for these keys at `at`."""
    writes = [
        UpdateOne({"_id": _id(job_type, key)}, {"$set": {"jobId": job_id, "at": at}}, upsert=True)
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
