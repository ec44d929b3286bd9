"""Every read of the job log, written once, as a plan that either executor runs.

A plan yields store operations and gets their documents back (`service.executors`): the
async executor serves the client and the CLI, the sync one the dashboard. Results are the
read models of `service.models.views`, the same everywhere.
"""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.executors import Aggregate, Count, Find, Plan, Record, UpdateOne
from service.models import JobStatus, JobType, LogEntry
from service.models.logs import search_text
from service.models.views import (
    HELD,
    DeadLetter,
    EntityMatch,
    FamilyProgress,
    OrphanFamily,
    PendingJob,
    PendingState,
    RootSummary,
    Timeline,
)
from service.store import DEAD_LETTERS, FAMILIES, LOGS, chunks

NEWEST_FIRST = (("startedAt", -1),)
ENTITY_SEARCH_LIMIT = 500


@dataclass(frozen=True)
class RootFilters:
    """What the roots list is narrowed by. Every value is data, never query syntax."""

    status: str | None = None
    job_type: str | None = None
    entity: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def query(self) -> Record:
        """The filter on root logs (served by the isRootJob index); text matches literally."""
        query: Record = {"isRootJob": True}
        if self.job_type is not None:
            query["jobType"] = str(self.job_type)
        if self.entity.strip():
            query["entityName"] = literal_pattern(self.entity)
        started: Record = {}
        if self.since is not None:
            started["$gte"] = self.since
        if self.until is not None:
            started["$lte"] = self.until
        if started:
            query["startedAt"] = started
        return query


def literal_pattern(text: str) -> Record:
    """A case-insensitive match of `text` as typed: never a regex, never an operator."""
    return {"$regex": re.escape(text.strip()), "$options": "i"}


def roots_page(
    filters: RootFilters, *, limit: int, skip: int = 0, max_attempts: int
) -> Plan[list[RootSummary]]:
    """Roots by latest activity, one per job (its latest attempt), with family roll-ups."""
    page = RootPage(limit=limit, skip=skip, status=filters.status)
    yield Find(LOGS, filters.query(), sort=NEWEST_FIRST, until=page.offer)
    ids = [entry.job_id for entry in page.entries if entry.job_id]
    rollups: dict[str, Record] = {}
    if ids:
        rollups, versions = yield from _snapshots(ROLLUP, ids, max_attempts)
        if missing := [root for root in ids if root not in rollups]:
            found = yield Find(LOGS, {"parentJobId": {"$in": missing}}, projection=ROLLUP_FIELDS)
            for root, (row, entries) in family_rollups(found, max_attempts).items():
                rollups[root] = row
                if root in versions and not (
                    row["childrenQueued"] or row["childrenRunning"] or row["stillRunning"]
                ):
                    yield from _keep(ROLLUP, root, versions[root], entries, max_attempts, row)
    return [RootSummary(root=e, **rollups.get(e.job_id or "", {})) for e in page.entries]


# A family with no queued or running entry changes only by gaining or losing entries: every
# write that changes what a roll-up counts (status, job type, outcome, finish, retryability,
# attempt) to an existing entry is conditional on its being queued or running, except a
# poison message's, which bumps the family's `version` (`logbook.touch_family`). The
# migration's writes to old entries set other fields (search keys, a start time) or move
# entries into or out of a family, which changes its count. So a roll-up of such a family,
# kept in its record with the entries it counted, stays true while the family's count of
# entries (one index count) and its version are unchanged. The dashboard's read writes that
# record: a login that may only read keeps nothing and reads on.
ROLLUP, PROGRESS = "rollup", "progress"
NOT_COUNTED = 0  # progress does not count retries still to come: no attempt limit applies


def _snapshots(
    kind: str, root_ids: list[str], max_attempts: int
) -> Plan[tuple[dict[str, Any], dict[str, Any]]]:
    """The still-true `kind` snapshots of these families, and every record's version."""
    records = yield Find(FAMILIES, {"_id": {"$in": root_ids}}, projection={"version": 1, kind: 1})
    versions = {str(record["_id"]): record.get("version") for record in records}
    kept: dict[str, Any] = {}
    for record in records:
        snapshot = record.get(kind)
        if (
            not isinstance(snapshot, dict)
            or snapshot.get("version") != record.get("version")
            or snapshot.get("maxAttempts") != max_attempts
        ):
            continue
        [counted] = yield Count(LOGS, {"parentJobId": record["_id"]})
        if counted["n"] == snapshot.get("entries"):
            kept[str(record["_id"])] = snapshot["value"]
    return kept, versions


def _keep(
    kind: str, root_id: str, version: Any, entries: int, max_attempts: int, value: Any
) -> Plan[None]:
    """Keep a settled family's `kind` in its record, unless the record changed meanwhile."""
    snapshot = {"version": version, "entries": entries, "maxAttempts": max_attempts}
    yield UpdateOne(
        FAMILIES,
        {"_id": root_id, "version": version},
        {"$set": {kind: {**snapshot, "value": value}}},
    )


def timeline(root_id: str) -> Plan[Timeline]:
    """A root's attempts, then every descendant's by `startedAt` (two indexed queries)."""
    root = yield Find(LOGS, {"jobId": root_id}, sort=(("attempt", 1),))
    children = yield Find(LOGS, {"parentJobId": root_id}, sort=(("startedAt", 1), ("attempt", 1)))
    return Timeline(root_id=root_id, root=_entries(root), children=_entries(children))


def latest_attempt(job_id: str) -> Plan[LogEntry | None]:
    """A job's latest attempt (the `(jobId, attempt)` index), or None."""
    found = yield Find(LOGS, {"jobId": job_id}, sort=(("attempt", -1),), limit=1)
    return _entries(found)[0] if found else None


def reruns(job_ids: list[str]) -> Plan[dict[str, list[str]]]:
    """The jobs that re-run each of `job_ids` (the `rerunOf` index), by the job they repeat."""
    found: list[Record] = []
    for chunk in chunks(job_ids):
        found += yield Find(
            LOGS, {"rerunOf": {"$in": chunk}}, projection={"jobId": 1, "rerunOf": 1}
        )
    by_job: dict[str, list[str]] = {}
    for document in found:
        ids = by_job.setdefault(str(document["rerunOf"]), [])
        if document.get("jobId") not in ids:
            ids.append(str(document.get("jobId")))
    return by_job


FAMILY_ORDERS = {
    "start": (("startedAt", 1), ("attempt", 1)),
    "slowest": (("durationMs", -1), ("startedAt", 1)),
    "newest": (("startedAt", -1), ("attempt", -1)),
}


def family_progress(root_id: str) -> Plan[FamilyProgress]:
    """How far a family is: its root's status, its jobs by job type and latest status.

    One read on the `parentJobId` index of five short fields per entry (a 10,000-album run
    would make `timeline` move megabytes), folded here (see `latest_attempts_of`); a
    settled family's answer is kept in its record.
    """
    root = yield Find(LOGS, {"jobId": root_id}, sort=(("attempt", -1),), limit=1)
    root_status = root[0].get("status") if root else None
    kept, versions = yield from _snapshots(PROGRESS, [root_id], NOT_COUNTED)
    if root_id in kept:
        counts = [(str(t), str(s), int(n)) for t, s, n in kept[root_id]]
        return FamilyProgress(root_status=root_status, counts=counts)
    found = yield Find(LOGS, {"parentJobId": root_id}, projection=PROGRESS_FIELDS)
    jobs: dict[tuple[str, str], int] = {}
    for doc, _ in latest_attempts_of(found).values():
        kind = (str(doc.get("jobType")), str(doc.get("status")))
        jobs[kind] = jobs.get(kind, 0) + 1
    counts = sorted((job_type, status, n) for (job_type, status), n in jobs.items())
    unfinished = {JobStatus.QUEUED.value, JobStatus.RUNNING.value}
    if root_id in versions and not any(status in unfinished for _, status, _ in counts):
        entries = len(found)
        yield from _keep(PROGRESS, root_id, versions[root_id], entries, NOT_COUNTED, counts)
    return FamilyProgress(root_status=root_status, counts=counts)


@dataclass(frozen=True)
class FamilyView:
    """Which of a big family's entries to show, and in what order (hashable: cache keys)."""

    status: str | None = None
    job_type: str | None = None
    entity: str = ""
    order: str = "start"

    def query(self, root_id: str) -> Record:
        """The filter on the family's entries (served by the parentJobId index)."""
        query: Record = {"parentJobId": root_id}
        if self.status is not None:
            query["status"] = str(self.status)
        if self.job_type is not None:
            query["jobType"] = str(self.job_type)
        if folded := search_text(self.entity):
            query["entitySearch"] = {"$regex": "^" + re.escape(folded)}
        return query


def family_entries(
    root_id: str, view: FamilyView, *, limit: int, skip: int = 0
) -> Plan[list[LogEntry]]:
    """One page of a family's entries (every attempt), filtered: for families too big to show."""
    sort = FAMILY_ORDERS.get(view.order, FAMILY_ORDERS["start"])
    found = yield Find(LOGS, view.query(root_id), sort=sort, skip=skip, limit=limit)
    return _entries(found)


def entity_roots(text: str, *, limit: int = ENTITY_SEARCH_LIMIT) -> Plan[list[EntityMatch]]:
    """Roots whose family touched an entity, by the start of any word of its name, or its id.

    Both are index lookups (`entitySearch`, `entityId`): the name is compared
    as stored search keys (accents and case folded), anchored, so the cost follows the
    matches, not the history.
    """
    wanted: list[Record] = [{"entityId": text.strip()}]
    if folded := search_text(text):
        wanted.append({"entitySearch": {"$regex": "^" + re.escape(folded)}})
    touched = yield Find(
        LOGS,
        {"$or": wanted},
        projection={"jobId": 1, "parentJobId": 1, "isRootJob": 1, "entityName": 1},
        limit=limit,
    )
    roots: dict[str, set[str]] = {}
    for doc in touched:
        root_id = doc.get("jobId") if doc.get("isRootJob") else doc.get("parentJobId")
        if root_id not in (None, ""):  # old releases stored some ids as numbers
            roots.setdefault(str(root_id), set()).add(str(doc.get("entityName") or ""))
    return [EntityMatch(root_job_id=r, entities=sorted(n)) for r, n in roots.items()]


def orphans() -> Plan[list[OrphanFamily]]:
    """Families whose root log is gone, from the family records, never from every child's log.

    The family records (one small document per root) and the roots' job ids, which grow with
    the number of families, not with their entries; then only the orphans' own entries,
    counted (one aggregation per 200 missing roots): what the view shows.
    """
    families = yield Find(FAMILIES, {}, projection={"_id": 1})
    roots = yield Find(LOGS, {"isRootJob": True}, projection={"_id": 0, "jobId": 1})
    present = {_key(doc.get("jobId")) for doc in roots}
    missing = [doc["_id"] for doc in families if _key(doc["_id"]) not in present]
    groups: list[Record] = []
    for chunk in chunks(missing):
        groups += yield Aggregate(
            LOGS,
            [
                {"$match": {"parentJobId": {"$in": chunk}}},
                {
                    "$group": {
                        "_id": "$parentJobId",
                        "entries": {"$sum": 1},
                        "firstStarted": {"$min": "$startedAt"},
                    }
                },
            ],
        )
    found = [
        OrphanFamily(
            missing_root=str(g["_id"]), entries=g["entries"], first_started=g["firstStarted"]
        )
        for g in groups
    ]
    return sorted(found, key=lambda family: (family.first_started is None, family.first_started))


def _key(job_id: Any) -> Any:
    # Old releases stored some ids as numbers: a set holds any of them, a list would not hash.
    return repr(job_id) if isinstance(job_id, dict | list) else job_id


def legacy_logs(*, limit: int, skip: int = 0) -> Plan[list[LogEntry]]:
    """Entries without lineage (written before it existed, or tagged legacy), newest first."""
    query = {"$or": [{"isRootJob": {"$exists": False}}, {"legacy": True}]}
    found = yield Find(LOGS, query, sort=NEWEST_FIRST, skip=skip, limit=limit)
    return _entries(found)


class RootPage:
    """Collects one page of roots from logs newest first, one per job (its latest attempt).

    A retried root has one log per attempt and its latest attempt started last, so the first
    log seen of each job is the one that counts; the status filter applies to it.
    """

    def __init__(self, *, limit: int, skip: int = 0, status: str | None = None) -> None:
        self._wanted, self._skip, self._status = skip + limit, skip, status
        self._seen: set[str] = set()
        self._matching: list[LogEntry] = []

    def offer(self, document: Record) -> bool:
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


# What a roll-up and a progress bar read of each entry. Families are folded here rather than
# by an aggregation: the embedded store's aggregation of a running 10,000-entry family took
# 2.3 s against 0.6 s for this read (measured), and on MongoDB the read moves about 100
# bytes an entry from the same index scan.
PROGRESS_FIELDS: Record = {"_id": 0, "parentJobId": 1, "jobId": 1, "attempt": 1, "jobType": 1,
                           "status": 1}  # fmt: skip
ROLLUP_FIELDS: Record = {**PROGRESS_FIELDS, "details.outcome": 1, "error.retryable": 1,
                         "finishedAt": 1}  # fmt: skip


def bson_order(value: Any) -> tuple[int, Any]:
    """A sort key that orders values as MongoDB compares them across types (null first)."""
    match value:
        case None:
            return (1, 0)
        case bool():
            return (8, value)
        case int() | float():
            return (2, value)
        case str():
            return (3, value)
        case datetime():
            return (9, value)
        case _:
            return (5, 0)  # an object or an array: no finer order is needed here


def latest_attempts_of(documents: Iterable[Record]) -> dict[Any, tuple[Record, int]]:
    """Each job's latest attempt and how many entries it has, by (family, job id)."""
    return _latest_by(
        documents,
        job=lambda doc: (_key(doc.get("parentJobId")), _key(doc.get("jobId"))),
        attempt=lambda doc: doc.get("attempt"),
    )


def _latest_by[T](
    items: Iterable[T], *, job: Callable[[T], Any], attempt: Callable[[T], Any]
) -> dict[Any, tuple[T, int]]:
    """Each job's latest item and how many it has.

    The latest is the highest attempt, compared as MongoDB sorts values; of two equal ones
    the one read last (only logs from before lineage repeat an attempt, and MongoDB's own
    order among them is undefined).
    """
    latest: dict[Any, tuple[T, int]] = {}
    for item in items:
        key = job(item)
        if key not in latest:
            latest[key] = (item, 1)
            continue
        kept, count = latest[key]
        newer = bson_order(attempt(item)) >= bson_order(attempt(kept))
        latest[key] = (item if newer else kept, count + 1)
    return latest


def family_rollups(documents: Iterable[Record], max_attempts: int) -> dict[str, tuple[Record, int]]:
    """Each family's roll-up over its jobs' latest attempts, and its count of entries."""
    rollups: dict[str, tuple[Record, int]] = {}
    for (root, _), (doc, attempts) in latest_attempts_of(documents).items():
        row, entries = rollups.get(str(root)) or ({**ZERO_ROLLUP}, 0)
        status, job_type = doc.get("status"), doc.get("jobType")
        details, error = doc.get("details"), doc.get("error")
        outcome = details.get("outcome") if isinstance(details, dict) else None
        retryable = error.get("retryable") if isinstance(error, dict) else None
        counted = {
            "childrenTotal": True,
            "childrenQueued": status == JobStatus.QUEUED,
            "childrenRunning": status == JobStatus.RUNNING,
            "childrenFailed": status == JobStatus.FAILED,
            "childrenSkipped": status == JobStatus.SKIPPED,
            # Match outcomes are Discogs': MusicBrainz lookups also say "matched".
            "matched": job_type == JobType.DISCOGS_ARTIST and outcome == "matched",
            "noMatch": job_type == JobType.DISCOGS_ARTIST and outcome == "no_match",
            "ambiguous": job_type == JobType.DISCOGS_ARTIST and outcome == "ambiguous",
            "cached": job_type == JobType.CACHE_IMAGE and status == JobStatus.SUCCESS,
            # Failed, retryable, attempts left: another attempt is on its way.
            "stillRunning": status == JobStatus.FAILED
            and retryable is True
            and bson_order(doc.get("attempt")) < bson_order(max_attempts),
        }
        for name, yes in counted.items():
            row[name] += int(yes)
        finished, last = doc.get("finishedAt"), row["lastFinishedAt"]
        if finished is not None and (last is None or bson_order(finished) > bson_order(last)):
            row["lastFinishedAt"] = finished
        rollups[str(root)] = (row, entries + attempts)
    return rollups


ZERO_ROLLUP: Record = {
    **dict.fromkeys(("childrenTotal", "childrenQueued", "childrenRunning", "childrenFailed",
                     "childrenSkipped", "matched", "noMatch", "ambiguous", "cached",
                     "stillRunning"), 0),
    "lastFinishedAt": None,
}  # fmt: skip


def dead_letters(*, limit: int, skip: int = 0) -> Plan[list[DeadLetter]]:
    """Stream entries that could not be jobs, newest first."""
    found = yield Find(DEAD_LETTERS, {}, sort=(("at", -1),), skip=skip, limit=limit)
    return [DeadLetter.model_validate(document) for document in found]


def unfinished(
    root_id: str,
    entries: list[LogEntry],
    *,
    max_attempts: int,
    lease_seconds: float,
    now: datetime,
) -> list[PendingJob]:
    """Every job of the family not finished yet, with where it stands."""
    latest = latest_attempts(entries)
    failures = {
        entry.job_id: f"{entry.error.type}: {entry.error.message}"
        for entry in sorted(entries, key=lambda e: e.attempt)
        if entry.error is not None
    }
    return [
        _pending(job_id, latest.get(job_id), failures.get(job_id), max_attempts, lease_seconds, now)
        for job_id in pending_jobs(root_id, entries, max_attempts)
    ]


def _pending(
    job_id: str,
    entry: LogEntry | None,
    last_failure: str | None,
    max_attempts: int,
    lease_seconds: float,
    now: datetime,
) -> PendingJob:
    if entry is None:
        return PendingJob(job_id=job_id, state=PendingState.NO_LOG)
    alive = entry.heartbeat_at or entry.started_at
    if entry.status == JobStatus.QUEUED:
        state = PendingState.DUE if entry.due_at is not None else PendingState.QUEUED
    elif entry.status == JobStatus.RUNNING:
        silent = alive is not None and (now - alive).total_seconds() > lease_seconds
        state = PendingState.LOST if silent else PendingState.RUNNING
    else:  # failed, with another attempt on its way
        state = PendingState.RETRYING
    worker = entry.worker
    return PendingJob(
        job_id=job_id,
        state=state,
        job_type=entry.job_type,
        entity_name=entry.entity_name,
        attempt=entry.attempt,
        max_attempts=max_attempts,
        queued_at=entry.queued_at,
        due_at=entry.due_at,
        started_at=entry.started_at,
        worker=f"{worker.host}:{worker.pid}" if worker is not None else None,
        last_alive_at=alive if state in HELD else None,
        last_failure=last_failure,
    )


def latest_attempts(entries: list[LogEntry]) -> dict[str, LogEntry]:
    """The highest attempt logged for each job id."""
    with_ids = (entry for entry in entries if entry.job_id)
    latest = _latest_by(with_ids, job=lambda e: str(e.job_id), attempt=lambda e: e.attempt)
    return {job_id: entry for job_id, (entry, _) in latest.items()}


def pending_jobs(root_id: str, entries: list[LogEntry], max_attempts: int) -> list[str]:
    """Job ids reachable from the root (`spawnedJobIds`, re-runs) not finished yet."""
    latest = latest_attempts(entries)
    spawned: dict[str, set[str]] = {}
    for entry in entries:  # every attempt's children: an earlier attempt may have spawned some
        spawned.setdefault(entry.job_id or "", set()).update(entry.spawned_job_ids)
        if entry.rerun_of and entry.job_id:  # a child's re-run belongs to the family's story
            spawned.setdefault(entry.rerun_of, set()).add(entry.job_id)
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


def _entries(documents: list[Record]) -> list[LogEntry]:
    return [LogEntry.model_validate(document) for document in documents]
