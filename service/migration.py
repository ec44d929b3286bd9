"""Tag logs written before lineage existed, in batches, safely on a live store.

Every rule selects only documents that still need it (`isRootJob` missing, `startedAt`
missing, or `parentJobId` equal to `jobId`), so a second run changes nothing and a run killed
at any point is finished by the next one. New logs always carry `isRootJob`, so they are never
tagged legacy. One rule = a few round trips per batch, never one per document.
"""

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, PyMongoError

from service.errors import MigrationError, StoreUnavailableError
from service.executors import Record
from service.models import EnrichmentLog
from service.models.logs import search_keys
from service.store import FAMILIES, chunks, ensure_indexes, run_sync

NO_ROOT_FLAG = {"isRootJob": {"$exists": False}}
# Every BSON type an _id can have, in MongoDB's sort order ("number": int, long, double, decimal).
ID_TYPES = ("number", "string", "object", "binData", "objectId", "bool", "date", "timestamp")
# The rules that set isRootJob: each document gets it from one of them.
FLAG_RULES = frozenset({"tagged root", "tagged child", "tagged legacy"})


@dataclass
class MigrationReport:
    """What a run saw and changed (or, in a dry run, would change)."""

    seen: int = 0
    changed: Counter[str] = field(default_factory=Counter)
    round_trips: int = 0
    # Wall time per step: "indexes", then each rule.
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    _touched: set[Any] = field(default_factory=set)  # by any rule
    _flagged: set[Any] = field(default_factory=set)  # given isRootJob

    @property
    def unchanged(self) -> int:
        """Documents no rule touched."""
        return max(self.seen - len(self._touched), 0)

    def record(self, rule: str, ids: list[Any]) -> None:
        """Count one rule applied to these documents."""
        if rule in FLAG_RULES:
            # A document gets isRootJob from the first rule that matches it. A real run's later
            # queries no longer see it; a dry run, which writes nothing, must skip it here.
            ids = [i for i in ids if _hashable(i) not in self._flagged]
            self._flagged.update(map(_hashable, ids))
        self.changed[rule] += len(ids)
        self._touched.update(map(_hashable, ids))


def _hashable(identifier: Any) -> Any:
    # An _id may be an embedded document (a dict), which a set cannot hold.
    return repr(identifier) if isinstance(identifier, dict | list) else identifier


class LegacyMigration:
    """The migration over one `enrichment_logs` collection (sync PyMongo)."""

    def __init__(
        self,
        logs: Collection[Record],
        *,
        batch_size: int = 500,
        dry_run: bool = False,
        progress: Callable[[str, int], None] | None = None,
    ) -> None:
        self._logs = logs
        self._batch = batch_size
        self._dry = dry_run
        self._progress = progress or (lambda rule, count: None)
        self.report = MigrationReport()
        self._id_types: list[str] = []

    def run(self) -> MigrationReport:
        """Ensure the indexes, then apply every rule in order."""
        # (what the summary counts it under, the step's own name, the step)
        steps: list[tuple[str, str, Callable[[], None]]] = [
            ("tagged root", "tagged root (referenced)", self._referenced_roots),
            # After the referenced roots: a self-named log still names its jobId as parent.
            ("tagged root", "tagged root (self-parented)", self._self_parented_roots),
            ("tagged child", "tagged child", self._children),
            ("tagged legacy", "tagged legacy", self._legacy),
            ("startedAt filled", "startedAt filled", self._started_at),
            ("search keys filled", "search keys filled", self._search_keys),
            ("families recorded", "families recorded", self._families),
        ]
        if not self._dry:
            steps.insert(0, ("indexes", "indexes", self._ensure_indexes))
        step = "counting"
        try:
            self.report.seen = self._count({})
            self._id_types = [t for t in ID_TYPES if self._any({"_id": {"$type": t}})]
            for rule, name, apply in steps:
                step, started = name, time.perf_counter()
                apply()
                self.report.seconds[rule] += time.perf_counter() - started
        except PyMongoError as exc:
            done = sum(self.report.changed.values())
            stopped = (
                f"migration stopped at {step!r} after {done} changes "
                f"(run it again to finish): {exc}"
            )
            if isinstance(exc, ConnectionFailure):
                raise StoreUnavailableError(stopped) from exc
            raise MigrationError(stopped) from exc
        return self.report

    def _ensure_indexes(self) -> None:
        # The same index maintenance every worker and command runs when it connects.
        self.report.round_trips += run_sync(self._logs.database, ensure_indexes([EnrichmentLog]))

    def _self_parented_roots(self) -> None:
        # parentJobId == jobId: the job named itself as its root. The store compares the two.
        query = {"parentJobId": {"$type": "string"}, "$expr": {"$eq": ["$parentJobId", "$jobId"]}}
        self._update("tagged root", query, {"isRootJob": True, "parentJobId": None})

    def _referenced_roots(self) -> None:
        # Page through the logs still without the flag and ask which of their jobIds other logs
        # name as parent (the parentJobId index answers): the work follows the legacy logs,
        # not every root the collection has ever seen.
        for docs in self._batches(NO_ROOT_FLAG, ["jobId"]):
            by_job: dict[str, list[Any]] = {}
            for doc in docs:
                if isinstance(doc.get("jobId"), str) and doc["jobId"]:
                    by_job.setdefault(doc["jobId"], []).append(doc["_id"])
            for job_ids in chunks(list(by_job)):
                named = self._logs.distinct("parentJobId", {"parentJobId": {"$in": job_ids}})
                self.report.round_trips += 1
                ids = [i for job in named if job in by_job for i in by_job[job]]
                for part in chunks(ids):  # more than 200 when jobIds repeat
                    if not self._dry:
                        query = {"_id": {"$in": part}, **NO_ROOT_FLAG}
                        self._logs.update_many(query, {"$set": {"isRootJob": True}})
                        self.report.round_trips += 1
                    self.report.record("tagged root", part)
            self._progress("tagged root", len(docs))

    def _children(self) -> None:
        # Any parent reference counts, even an oddly typed one: such a log is not a root.
        query = {**NO_ROOT_FLAG, "parentJobId": {"$exists": True, "$ne": None}}
        self._update("tagged child", query, {"isRootJob": False})

    def _legacy(self) -> None:
        query = {
            **NO_ROOT_FLAG,
            "$or": [{"parentJobId": {"$exists": False}}, {"parentJobId": None}],
        }
        self._update("tagged legacy", query, {"isRootJob": False, "legacy": True})

    def _started_at(self) -> None:
        """Each start time is computed here, so one bulk write per batch sets them."""
        rule = "startedAt filled"
        for docs in self._batches({"startedAt": {"$exists": False}}, ["createdAt", "timestamp"]):
            if not self._dry:
                # By _id alone, set only where still missing (a worker may have rewritten the
                # log meanwhile). Repeating the query instead would cost the embedded store a
                # scan of the whole collection per document (16 ms each at 3,000 logs, not 2).
                self._logs.bulk_write([
                    UpdateOne({"_id": doc["_id"]}, keep_existing({"startedAt": started_from(doc)}))
                    for doc in docs
                ])  # fmt: skip
                self.report.round_trips += 1
            self.report.record(rule, [doc["_id"] for doc in docs])
            self._progress(rule, len(docs))

    def _search_keys(self) -> None:
        """Entity search keys for logs written before they were stored (one write per batch)."""
        rule = "search keys filled"
        query = {"entitySearch": {"$exists": False}, "entityName": {"$type": "string"}}
        for docs in self._batches(query, ["entityName"]):
            if not self._dry:
                self._logs.bulk_write([
                    UpdateOne(
                        {"_id": doc["_id"], "entitySearch": {"$exists": False}},
                        {"$set": {"entitySearch": search_keys(doc["entityName"])}},
                    )
                    for doc in docs
                ])  # fmt: skip
                self.report.round_trips += 1
            self.report.record(rule, [doc["_id"] for doc in docs])
            self._progress(rule, len(docs))

    def _families(self) -> None:
        """A `job_families` record for every root that children name and that has none.

        Logs written before the records existed (by an older release, or copied in) would
        otherwise leave their orphans out of the Orphans view. One pass over the children's
        parent references, here and once, so that the view never needs one.
        """
        rule, families = "families recorded", self._logs.database[FAMILIES]
        groups = self._logs.aggregate([
            # Not a self-named root (the rule above drops its parentJobId; a dry run keeps it).
            {"$match": {
                "parentJobId": {"$exists": True, "$ne": None},
                "$expr": {"$ne": ["$parentJobId", "$jobId"]},
            }},
            {"$group": {"_id": "$parentJobId", "since": {"$min": "$startedAt"}}},
        ])  # fmt: skip
        self.report.round_trips += 1
        for batch in chunks([group for group in groups if group["_id"] not in (None, "")]):
            known = {
                doc["_id"] for doc in families.find({"_id": {"$in": [g["_id"] for g in batch]}})
            }
            self.report.round_trips += 1
            new = [group for group in batch if group["_id"] not in known]
            if new and not self._dry:
                writes = [family_write(group) for group in new]
                families.bulk_write(writes, ordered=False)
                self.report.round_trips += 1
            self.report.changed[rule] += len(new)  # records, not log documents
            self._progress(rule, len(batch))

    def _update(self, rule: str, query: Record, values: Record) -> None:
        """Set `values` on every match, a batch of ids at a time."""
        for batch in self._batches(query):
            for ids in chunks(batch):
                if not self._dry:
                    self._logs.update_many({"_id": {"$in": ids}, **query}, {"$set": values})
                    self.report.round_trips += 1
                self.report.record(rule, ids)
            self._progress(rule, len(batch))

    def _batches(self, query: Record, fields: list[str] | None = None) -> Iterator[list[Any]]:
        """Pages of matching documents (just their ids, or these `fields` too)."""
        # Keyset paging on _id: stable while the updates above make documents leave the query.
        # `$gt` compares only within one BSON type, so each type of _id is paged on its own.
        projection = dict.fromkeys(["_id", *(fields or [])], 1)
        for id_type in self._id_types:
            last: Any = None
            while True:
                after = {"$type": id_type} if last is None else {"$type": id_type, "$gt": last}
                docs = list(
                    self._logs.find(
                        {"$and": [query, {"_id": after}]},
                        projection,
                        sort=[("_id", ASCENDING)],
                        limit=self._batch,
                    )
                )
                self.report.round_trips += 1
                if not docs:
                    break
                last = docs[-1]["_id"]
                yield docs if fields is not None else [doc["_id"] for doc in docs]

    def _any(self, query: Record) -> bool:
        self.report.round_trips += 1
        return self._logs.find_one(query, {"_id": 1}) is not None

    def _count(self, query: Record) -> int:
        self.report.round_trips += 1
        return self._logs.count_documents(query)


def family_write(group: Record) -> UpdateOne:
    """The write that records one family (its root id and first start) if not yet recorded."""
    return UpdateOne(
        {"_id": group["_id"]}, {"$setOnInsert": {"since": group["since"]}}, upsert=True
    )


def keep_existing(values: Record) -> list[Record]:
    """An update pipeline that sets each of `values` only where the field is missing or null."""
    kept = {key: {"$ifNull": [f"${key}", {"$literal": value}]} for key, value in values.items()}
    return [{"$set": kept}]


def started_from(doc: Record) -> datetime:
    """A start time for a log without one: createdAt, else timestamp, else its ObjectId's time."""
    for key in ("createdAt", "timestamp"):
        value = doc.get(key)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
            except (ValueError, OverflowError, OSError):  # NaN, infinite, out of range
                continue
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    identifier = doc.get("_id")
    if isinstance(identifier, ObjectId):
        return identifier.generation_time
    return datetime(1970, 1, 1, tzinfo=UTC)
