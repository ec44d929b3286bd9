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
    *, limit: int = 50, skip: int = 0, status: str | None = None, job_type: str | None = None
) -> list[RootSummary]:
    """Root jobs by latest activity, one per job (its latest attempt), with family roll-ups."""
    page = await _latest_root_attempts(limit=limit, skip=skip, status=status, job_type=job_type)
    rollups = await _rollups([entry.job_id for entry in page if entry.job_id])
    return [RootSummary(root=entry, **rollups.get(entry.job_id or "", {})) for entry in page]


class RootPage:
    """Collects one page of roots from logs newest first, one per job (its latest attempt).

    A retried root has one log per attempt and its latest attempt started last, so the first
    log seen of each job is the one that counts; the status filter applies to it.
    """

    def __init__(self, *, limit: int, skip: int = 0, status: str | None = None) -> None:
        self._wanted, self._skip, self._status = skip + limit, skip, status
        self._seen: set[str] = set()
        self._matching: list[LogEntry] = []

    def offer(self, document: dict[str, Any]) -> bool:
        """Consider the next log; True once the page is full."""
        entry = LogEntry.model_validate(document)
        if entry.job_id not in self._seen:
            self._seen.add(entry.job_id or "")
            if self._status is None or entry.status == self._status:
                self._matching.append(entry)
        return len(self._matching) >= self._wanted

    @property
    def entries(self) -> list[LogEntry]:
        """The page."""
        return self._matching[self._skip :]


def roots_query(*, job_type: str | None = None) -> dict[str, Any]:
    """The root-log query (served by the isRootJob index)."""
    query: dict[str, Any] = {"isRootJob": True}
    if job_type is not None:
        query["jobType"] = str(job_type)
    return query


async def _latest_root_attempts(
    *, limit: int, skip: int, status: str | None, job_type: str | None
) -> list[LogEntry]:
    page = RootPage(limit=limit, skip=skip, status=status)
    collection = EnrichmentLog.get_pymongo_collection()
    cursor = collection.find(roots_query(job_type=job_type), sort=[("startedAt", -1)])
    try:
        async for document in cursor:
            if page.offer(document):
                break
    finally:
        await cursor.close()
    return page.entries


def rollup_pipeline(root_ids: list[str], max_attempts: int = 3) -> list[dict[str, Any]]:
    """One aggregation rolling up many roots' families (served by the parentJobId index)."""

    def count(condition: dict[str, Any]) -> dict[str, Any]:
        return {"$sum": {"$cond": [condition, 1, 0]}}

    def discogs(outcome: str) -> dict[str, Any]:
        # Match outcomes are Discogs': MusicBrainz lookups also say "matched" in their details.
        return count(
            {"$and": [{"$eq": ["$jobType", "discogs_artist"]}, {"$eq": ["$outcome", outcome]}]}
        )

    # Count jobs, not attempts: keep each child job's latest attempt, then roll up per root.
    return [
        {"$match": {"parentJobId": {"$in": root_ids}}},
        {"$sort": {"jobId": 1, "attempt": 1}},
        {
            "$group": {
                "_id": "$jobId",
                "root": {"$last": "$parentJobId"},
                "status": {"$last": "$status"},
                "jobType": {"$last": "$jobType"},
                "outcome": {"$last": "$details.outcome"},
                "finishedAt": {"$last": "$finishedAt"},
                "retryable": {"$last": "$error.retryable"},
                "attempt": {"$last": "$attempt"},
            }
        },
        {
            "$group": {
                "_id": "$root",
                "childrenTotal": {"$sum": 1},
                "childrenFailed": count({"$eq": ["$status", "failed"]}),
                "childrenSkipped": count({"$eq": ["$status", "skipped"]}),
                "matched": discogs("matched"),
                "noMatch": discogs("no_match"),
                "ambiguous": discogs("ambiguous"),
                "cached": count(
                    {
                        "$and": [
                            {"$eq": ["$jobType", "cache_image"]},
                            {"$eq": ["$status", "success"]},
                        ]
                    }
                ),
                # Failed, retryable, attempts left: another attempt is on its way.
                "stillRunning": count(
                    {
                        "$and": [
                            {"$eq": ["$status", "failed"]},
                            {"$eq": ["$retryable", True]},
                            {"$lt": ["$attempt", max_attempts]},
                        ]
                    }
                ),
                "lastFinishedAt": {"$max": "$finishedAt"},
            }
        },
    ]


async def _rollups(root_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not root_ids:
        return {}
    cursor = await EnrichmentLog.get_pymongo_collection().aggregate(rollup_pipeline(root_ids))
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
    spawned: dict[str, set[str]] = {}
    for entry in entries:  # every attempt's children: an earlier attempt may have spawned some
        spawned.setdefault(entry.job_id or "", set()).update(entry.spawned_job_ids)
    pending, seen, frontier = [], {root_id}, [root_id]
    while frontier:
        job_id = frontier.pop()
        last = latest.get(job_id)
        if last is None or not last.is_terminal(max_attempts):
            pending.append(job_id)
        for child in sorted(spawned.get(job_id, ())):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return pending
