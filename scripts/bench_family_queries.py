"""Seed R roots × C children and time the two lineage reads: a page of roots, one timeline.

    uv run python scripts/bench_family_queries.py --roots 200 --children 10

Runs against MONGODB_URL, or the embedded store (started if needed), in a throw-away
database. Prints the median of repeated runs; it asserts nothing about speed.
"""

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from service import queries
from service.config import Settings
from service.models.logs import search_keys
from service.store import connect_store


def seed_documents(roots: int, children: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Flat-linked log documents: each root followed by its children, one second apart."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    documents, root_ids = [], []
    for r in range(roots):
        root_id = uuid.uuid4().hex
        root_ids.append(root_id)
        at = start + timedelta(minutes=r)
        documents.append(log_document(root_id, None, "enrich_album", at))
        for c in range(children):
            child_at = at + timedelta(seconds=c + 1)
            documents.append(log_document(uuid.uuid4().hex, root_id, "enrich_artist", child_at))
    return documents, root_ids


def log_document(job_id: str, parent: str | None, job_type: str, at: datetime) -> dict[str, Any]:
    """One finished attempt's log document, as a worker stores it."""
    return {
        "jobId": job_id, "parentJobId": parent, "isRootJob": parent is None,
        "jobType": job_type, "entityType": job_type.removeprefix("enrich_"),
        "entityId": job_id, "entityName": f"entity {job_id[:6]}", "status": "success",
        "entitySearch": search_keys(f"entity {job_id[:6]}"),
        "attempt": 1, "startedAt": at, "finishedAt": at + timedelta(milliseconds=250),
        "durationMs": 250, "error": None, "fieldsEnriched": ["name"], "spawnedJobIds": [],
        "details": {}, "worker": {"host": "bench", "pid": 1},
    }  # fmt: skip


async def median_ms(action: Any, repeats: int) -> float:
    """Median wall time of `repeats` awaits of `action()`, in milliseconds."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        await action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


async def main(roots: int, children: int, repeats: int) -> None:
    """Seed, measure, print, drop."""
    settings = Settings().model_copy(update={"mongodb_db": f"bench_{uuid.uuid4().hex[:8]}"})
    store = await connect_store(settings)
    filters, max_attempts = queries.RootFilters(), settings.job_max_attempts
    try:
        documents, root_ids = seed_documents(roots, children)
        collection = store.logs
        started = time.perf_counter()
        for i in range(0, len(documents), 1000):
            await collection.insert_many(documents[i : i + 1000])
        print(f"seeded {len(documents)} logs in {time.perf_counter() - started:.1f}s")
        page = await median_ms(
            lambda: store.reader.run(
                queries.roots_page(filters, limit=50, max_attempts=max_attempts)
            ),
            repeats,
        )
        middle = root_ids[len(root_ids) // 2]
        family = await median_ms(lambda: store.reader.run(queries.timeline(middle)), repeats)
        print(f"roots page (50 roots + roll-ups, 2 queries): median {page:.1f} ms")
        print(f"timeline ({children} children, 2 queries): median {family:.1f} ms")
    finally:
        await store.client.drop_database(settings.mongodb_db)
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", type=int, default=200)
    parser.add_argument("--children", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.roots, args.children, args.repeats))
