"""Retention: whole families deleted once their last entry is old, never one still working.

A family goes as a whole (the root's entries, every descendant's, its `job_claims` and its
record in `job_families`), so no pruning ever leaves orphans. A family with a queued or
running entry is kept, however old.
Soft orphans (roots deleted by hand) are not families here: they stay visible as before.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from service.errors import StoreUnavailableError
from service.executors import Record
from service.models import UNFINISHED
from service.store import Store, chunks

# Roots are looked at this many at a time: one aggregation over their families per batch.
BATCH = 200


@dataclass
class PruneReport:
    """What a prune deleted (or, dry, would delete)."""

    families: int = 0
    entries: int = 0
    claims: int = 0
    kept_unfinished: int = 0
    roots: list[str] = field(default_factory=list)


async def prune(store: Store, *, older_than: datetime, dry_run: bool) -> PruneReport:
    """Delete every family whose last entry started or finished before `older_than`."""
    report = PruneReport()
    try:
        roots = [doc["jobId"] async for doc in store.logs.find(
            {"isRootJob": True, "startedAt": {"$lt": older_than}}, projection={"jobId": 1}
        )]  # fmt: skip
        for batch in chunks(sorted(set(roots)), BATCH):
            old, unfinished = await _old_families(store.logs, batch, older_than)
            report.kept_unfinished += unfinished
            report.roots += old
            if old:  # a batch of families: two deletes, not two per family
                report.entries += await _delete(store.logs, _families(old), dry_run)
                report.claims += await _delete(store.claims, _claims(old), dry_run)
                await _delete(store.families, {"_id": {"$in": old}}, dry_run)
    except PyMongoError as exc:
        raise StoreUnavailableError(f"could not prune: {exc}") from exc
    report.families = len(report.roots)
    return report


async def _old_families(
    logs: AsyncCollection[Record], roots: list[str], older_than: datetime
) -> tuple[list[str], int]:
    """Of these roots, the families all of whose entries are old and finished."""
    pipeline: list[Record] = [
        {"$match": _families(roots)},
        {"$project": {
            "family": {"$ifNull": ["$parentJobId", "$jobId"]},
            "last": {"$max": ["$startedAt", "$finishedAt"]},
            "open": {"$cond": [{"$in": ["$status", sorted(UNFINISHED)]}, 1, 0]},
        }},
        {"$group": {"_id": "$family", "last": {"$max": "$last"}, "open": {"$sum": "$open"}}},
    ]  # fmt: skip
    old: list[str] = []
    unfinished = 0
    async for family in await logs.aggregate(pipeline):
        if family["_id"] not in roots or family["last"] is None:
            continue
        if family["open"]:
            unfinished += 1
        elif family["last"] < older_than:
            old.append(str(family["_id"]))
    return old, unfinished


def _families(roots: list[str]) -> Record:
    return {"$or": [{"jobId": {"$in": roots}}, {"parentJobId": {"$in": roots}}]}


def _claims(roots: list[str]) -> Record:
    # A claim's `_id` is "<root>/<jobType>/<entity>": prefix matches on the `_id` index.
    return {"$or": [{"_id": {"$regex": f"^{re.escape(root)}/"}} for root in roots]}


async def _delete(collection: AsyncCollection[Record], query: Record, dry_run: bool) -> int:
    if dry_run:
        return await collection.count_documents(query)
    return (await collection.delete_many(query)).deleted_count
