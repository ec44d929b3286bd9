"""Read-side queries on `enrichment_logs`, all served by the lineage indexes."""

from typing import Any

from service.models import EnrichmentLog, LogEntry
from service.models.views import RootSummary, Timeline


async def family_logs(root_id: str) -> tuple[list[LogEntry], list[LogEntry]]:
    """A root's own attempts and every descendant's attempts, each by `startedAt`."""
    root = await _find({"jobId": root_id}, sort=[("attempt", 1)])
    children = await _find({"parentJobId": root_id}, sort=[("startedAt", 1), ("attempt", 1)])
    return root, children


async def timeline(root_id: str) -> Timeline:
    """The timeline of one root's family."""
    root, children = await family_logs(root_id)
    return Timeline(root_id=root_id, root=root, children=children)


async def roots(
    *,
    limit: int = 50,
    skip: int = 0,
    status: str | None = None,
    job_type: str | None = None,
) -> list[RootSummary]:
    """Root jobs, newest first, each with its family roll-up (two queries in all)."""
    query: dict[str, Any] = {"isRootJob": True}
    if status is not None:
        query["status"] = str(status)
    if job_type is not None:
        query["jobType"] = str(job_type)
    found = await _find(query, sort=[("startedAt", -1)], limit=limit, skip=skip)
    rollups = await _rollups([entry.job_id for entry in found if entry.job_id])
    return [RootSummary(root=entry, **rollups.get(entry.job_id or "", {})) for entry in found]


async def _rollups(root_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not root_ids:
        return {}
    # Count jobs, not attempts: keep each child job's latest attempt, then roll up per root.
    pipeline: list[dict[str, Any]] = [
        {"$match": {"parentJobId": {"$in": root_ids}}},
        {"$sort": {"jobId": 1, "attempt": 1}},
        {
            "$group": {
                "_id": "$jobId",
                "root": {"$last": "$parentJobId"},
                "status": {"$last": "$status"},
                "finishedAt": {"$last": "$finishedAt"},
            }
        },
        {
            "$group": {
                "_id": "$root",
                "childrenTotal": {"$sum": 1},
                "childrenFailed": {"$sum": {"$cond": [{"$eq": ["$status", "failed"]}, 1, 0]}},
                "childrenSkipped": {"$sum": {"$cond": [{"$eq": ["$status", "skipped"]}, 1, 0]}},
                "lastFinishedAt": {"$max": "$finishedAt"},
            }
        },
    ]
    cursor = await EnrichmentLog.get_pymongo_collection().aggregate(pipeline)
    return {row.pop("_id"): row async for row in cursor}


async def _find(
    query: dict[str, Any], *, sort: list[tuple[str, int]], limit: int = 0, skip: int = 0
) -> list[LogEntry]:
    cursor = EnrichmentLog.get_pymongo_collection().find(query, sort=sort, skip=skip, limit=limit)
    return [LogEntry.model_validate(document) async for document in cursor]


def latest_attempts(entries: list[LogEntry]) -> dict[str, LogEntry]:
    """The highest attempt logged for each job id."""
    latest: dict[str, LogEntry] = {}
    for entry in entries:
        if entry.job_id and entry.attempt >= getattr(latest.get(entry.job_id), "attempt", 0):
            latest[entry.job_id] = entry
    return latest


def pending_jobs(root_id: str, entries: list[LogEntry], max_attempts: int) -> list[str]:
    """Job ids reachable from the root through `spawnedJobIds` that are not finished yet."""
    latest = latest_attempts(entries)
    pending, seen, frontier = [], {root_id}, [root_id]
    while frontier:
        job_id = frontier.pop()
        entry = latest.get(job_id)
        if entry is None or not entry.is_terminal(max_attempts):
            pending.append(job_id)
        for child in entry.spawned_job_ids if entry else []:
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return pending
