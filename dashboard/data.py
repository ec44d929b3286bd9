"""The only code that queries the store for the dashboard: sync PyMongo, cached briefly."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st
from pymongo import MongoClient
from pymongo.database import Database

from service.config import Settings
from service.models import LogEntry
from service.queries import RootPage, rollup_pipeline, roots_query
from service.store import chunks, ensure_store

PAGE_SIZE = 50
QUERY_TTL_SECONDS = 3
Document = dict[str, Any]


@st.cache_resource
def settings() -> Settings:
    """The dashboard's settings (read once per server process)."""
    return Settings()


def _close(db: Database[Document]) -> None:
    db.client.close()


@st.cache_resource(on_release=_close)
def database() -> Database[Document]:
    """The store's database, starting the embedded store when nothing else is configured."""
    config = settings()
    client: MongoClient[Document] = MongoClient(
        ensure_store(config), tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    return client[config.mongodb_db]


@dataclass(frozen=True)
class RootFilters:
    """What the roots table is narrowed by. Every value is data, never query syntax."""

    status: str | None = None
    job_type: str | None = None
    entity: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def query(self) -> Document:
        """The MongoDB filter: user text is escaped into a literal, case-insensitive match."""
        query = roots_query(job_type=self.job_type)
        if self.entity.strip():
            query["entityName"] = {"$regex": re.escape(self.entity.strip()), "$options": "i"}
        started: Document = {}
        if self.since is not None:
            started["$gte"] = self.since
        if self.until is not None:
            started["$lte"] = self.until
        if started:
            query["startedAt"] = started
        return query


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def roots_page(filters: RootFilters, page: int) -> pd.DataFrame:
    """One page of roots with their family roll-ups: one query, one aggregation."""
    logs = database()["enrichment_logs"]
    collector = RootPage(limit=PAGE_SIZE, skip=page * PAGE_SIZE, status=filters.status)
    with logs.find(filters.query(), sort=[("startedAt", -1)]) as cursor:
        for document in cursor:
            if collector.offer(document):
                break
    entries = collector.entries
    ids = [entry.job_id for entry in entries if entry.job_id]
    pipeline = rollup_pipeline(ids, settings().job_max_attempts)
    rollups = {row.pop("_id"): row for row in logs.aggregate(pipeline)} if ids else {}
    return pd.DataFrame(
        [_root_row(entry, rollups.get(entry.job_id or "", {})) for entry in entries]
    )


def _root_row(root: LogEntry, rollup: Document) -> Document:
    last = max((t for t in (root.finished_at, rollup.get("lastFinishedAt")) if t), default=None)
    duration = (last - root.started_at).total_seconds() if last and root.started_at else None
    return {
        "started": root.started_at,
        "job type": root.job_type,
        "entity": root.entity_name,
        "status": root.status,
        "children": rollup.get("childrenTotal", 0),
        "failed": rollup.get("childrenFailed", 0),
        "skipped": rollup.get("childrenSkipped", 0),
        "still running": rollup.get("stillRunning", 0),
        "matched": rollup.get("matched", 0),
        "no match": rollup.get("noMatch", 0),
        "ambiguous": rollup.get("ambiguous", 0),
        "cached": rollup.get("cached", 0),
        "family s": round(duration, 2) if duration is not None else None,
        "job id": root.job_id,
    }


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def family(root_id: str) -> list[LogEntry]:
    """The root's attempts, then every descendant's by `startedAt` (two indexed queries)."""
    logs = database()["enrichment_logs"]
    root = list(logs.find({"jobId": root_id}, sort=[("attempt", 1)]))
    children = list(logs.find({"parentJobId": root_id}, sort=[("startedAt", 1), ("attempt", 1)]))
    return [LogEntry.model_validate(document) for document in root + children]


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def entity_roots(text: str) -> pd.DataFrame:
    """Roots whose family touched an entity, found by name or id (literal text)."""
    pattern = {"$regex": re.escape(text.strip()), "$options": "i"}
    logs = database()["enrichment_logs"]
    touched = logs.find(
        {"$or": [{"entityName": pattern}, {"entityId": text.strip()}]},
        projection={"jobId": 1, "parentJobId": 1, "isRootJob": 1, "entityName": 1},
        limit=500,
    )
    roots: dict[str, set[str]] = {}
    for doc in touched:
        root_id = doc.get("jobId") if doc.get("isRootJob") else doc.get("parentJobId")
        if root_id:
            roots.setdefault(root_id, set()).add(str(doc.get("entityName") or ""))
    rows = [{"root job id": r, "entities": ", ".join(sorted(n))} for r, n in roots.items()]
    return pd.DataFrame(rows)


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def orphans() -> pd.DataFrame:
    """Entries whose root has no log (deleted): grouped by the missing root's id."""
    logs = database()["enrichment_logs"]
    parents = [p for p in logs.distinct("parentJobId", {"parentJobId": {"$ne": None}}) if p]
    present: set[str] = set()
    for chunk in chunks(parents):
        present |= {d["jobId"] for d in logs.find({"jobId": {"$in": chunk}}, {"jobId": 1})}
    missing = [p for p in parents if p not in present]
    rows = []
    for parent in missing:
        entries = list(logs.find({"parentJobId": parent}, sort=[("startedAt", 1)]))
        rows.append({
            "missing root": parent,
            "entries": len(entries),
            "first started": entries[0].get("startedAt") if entries else None,
            "state": "incomplete family",
        })  # fmt: skip
    return pd.DataFrame(rows)


@st.cache_data(ttl=QUERY_TTL_SECONDS, show_spinner=False)
def legacy(page: int) -> pd.DataFrame:
    """Entries without lineage (written before it existed, or tagged legacy), newest first."""
    query = {"$or": [{"isRootJob": {"$exists": False}}, {"legacy": True}]}
    logs = database()["enrichment_logs"]
    cursor = logs.find(query, sort=[("startedAt", -1)], skip=page * PAGE_SIZE, limit=PAGE_SIZE)
    rows = []
    for document in cursor:
        entry = LogEntry.model_validate(document)
        rows.append({
            "started": entry.started_at, "job id": entry.job_id, "job type": entry.job_type,
            "entity": entry.entity_name or entry.entity_id, "status": entry.status,
        })  # fmt: skip
    return pd.DataFrame(rows)
